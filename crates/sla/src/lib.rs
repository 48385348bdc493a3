//! plaint-sla (work in progress).
