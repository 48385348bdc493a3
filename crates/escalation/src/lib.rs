//! plaint-escalation (work in progress).
