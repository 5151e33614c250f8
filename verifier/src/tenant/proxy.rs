pub(crate) fn _p() {}
