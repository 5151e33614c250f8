//! dait-measure
