//! Raw proxy-wasm ABI calls the SDK wraps too expensively for the hot path: the header map read
//! as one serialised block (the SDK's `get_map_bytes` allocates a string and a vector per header).

use proxy_wasm::types::{MapType, Status};

use crate::headers::HeaderBlock;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
}

/// The whole header map in one host call; empty when the host has none to give.
pub fn header_block(map: MapType) -> HeaderBlock {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: on success the host returns a buffer it allocated through this module's
    // `proxy_on_memory_allocate` (a leaked `Vec<u8>` of exactly `size` bytes), whose ownership
    // passes to us; the SDK's own `get_map_bytes` takes it back the same way.
    unsafe {
        match proxy_get_header_map_pairs(map, &mut data, &mut size) {
            Status::Ok if !data.is_null() => {
                HeaderBlock::new(Vec::from_raw_parts(data, size, size))
            }
            _ => HeaderBlock::default(),
        }
    }
}
