//! Artifact unpacking of arbitrary bytes saved as `artifact.tar` (the
//! unpacker sniffs the format from the content; the seeds are tar
//! archives). See `sgnode_fuzz::check_unpack` for what is asserted.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sgnode_fuzz::check_unpack(data, "tar"));
