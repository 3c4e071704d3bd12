//! Store maintenance: verify, repair, export, import (being written).
