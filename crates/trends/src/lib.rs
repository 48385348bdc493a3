//! plaint-trends (work in progress).
