//! plaint-import (work in progress).
