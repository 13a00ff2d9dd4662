//! Reading from and writing to Envoy: raw proxy-wasm ABI calls the SDK wraps too expensively
//! for the hot path (the header map read as one serialised block: the SDK's `get_map_bytes`
//! allocates a string and a vector per header) or would trap on a refusal, and the writers both
//! filter roles share (request out, local replies).

use proxy_wasm::types::{BufferType, MapType, Status};

use switchyard_core::config::LOCAL_REPLY_DETAILS;
use switchyard_core::exchange::{Outgoing, Reply};
use switchyard_core::headers::HeaderBlock;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(
        map_type: MapType,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> Status;
    fn proxy_set_header_map_pairs(
        map_type: MapType,
        map_data: *const u8,
        map_size: usize,
    ) -> Status;
    fn proxy_replace_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> Status;
    fn proxy_remove_header_map_value(
        map_type: MapType,
        key_data: *const u8,
        key_size: usize,
    ) -> Status;
    fn proxy_set_buffer_bytes(
        buffer_type: BufferType,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> Status;
}

fn result(status: Status) -> Result<(), Status> {
    match status {
        Status::Ok => Ok(()),
        other => Err(other),
    }
}

/// Sets (or, with `None`, removes) one header. Unlike the SDK's `set_map_value`, which panics
/// (a trap) when the host refuses, for instance once the headers have left, a refusal is
/// returned.
pub fn set_map_value(map: MapType, name: &str, value: Option<&[u8]>) -> Result<(), Status> {
    // SAFETY: the slices live for the call; the host copies them.
    unsafe {
        result(match value {
            Some(v) => {
                proxy_replace_header_map_value(map, name.as_ptr(), name.len(), v.as_ptr(), v.len())
            }
            None => proxy_remove_header_map_value(map, name.as_ptr(), name.len()),
        })
    }
}

/// Replaces the first `size` bytes of a body buffer (the chunk being processed) with `bytes`,
/// returning the host's refusal instead of trapping as the SDK's `set_buffer` does.
pub fn set_body(buffer: BufferType, size: usize, bytes: &[u8]) -> Result<(), Status> {
    // SAFETY: `bytes` lives for the call; the host copies it.
    unsafe {
        result(proxy_set_buffer_bytes(
            buffer,
            0,
            size,
            bytes.as_ptr(),
            bytes.len(),
        ))
    }
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

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> Status;
}

/// Pairs in proxy-wasm's serialised map form: `count`, then the lengths of each pair, then each
/// name and value followed by a NUL (all integers u32le).
fn serialize<V: AsRef<[u8]>>(pairs: &[(&str, V)]) -> Vec<u8> {
    let mut map = Vec::with_capacity(
        4 + pairs
            .iter()
            .map(|(k, v)| 10 + k.len() + v.as_ref().len())
            .sum::<usize>(),
    );
    let len = |n: usize| u32::try_from(n).unwrap_or(0).to_le_bytes();
    map.extend_from_slice(&len(pairs.len()));
    for (k, v) in pairs {
        map.extend_from_slice(&len(k.len()));
        map.extend_from_slice(&len(v.as_ref().len()));
    }
    for (k, v) in pairs {
        map.extend_from_slice(k.as_bytes());
        map.push(0);
        map.extend_from_slice(v.as_ref());
        map.push(0);
    }
    map
}

/// Replaces a whole header map in one host call (the SDK's `set_map_bytes` panics, trapping
/// the VM, when the host refuses).
pub fn set_header_map(map: MapType, pairs: &[(&str, &[u8])]) -> Result<(), Status> {
    let data = serialize(pairs);
    // SAFETY: `data` lives for the call; the host copies it.
    unsafe { result(proxy_set_header_map_pairs(map, data.as_ptr(), data.len())) }
}

/// Answers the request itself. Unlike the SDK's `send_http_response`, which panics (a trap:
/// the worker's VM is rebuilt) when the host refuses, a refusal is returned; and the reply
/// carries [`LOCAL_REPLY_DETAILS`].
pub fn send_local_response(
    status: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let map = serialize(headers);
    // SAFETY: every pointer and length describes a live slice for the duration of the call;
    // the host copies what it needs.
    unsafe {
        match proxy_send_local_response(
            status,
            LOCAL_REPLY_DETAILS.as_ptr(),
            LOCAL_REPLY_DETAILS.len(),
            body.as_ptr(),
            body.len(),
            map.as_ptr(),
            map.len(),
            -1,
        ) {
            Status::Ok => Ok(()),
            other => Err(other),
        }
    }
}

/// The request on its way upstream, as the exchange writes it: `size` is the body's length as
/// Envoy holds it.
pub struct RequestOut {
    pub size: usize,
}

impl Outgoing for RequestOut {
    fn set_body(&mut self, body: &[u8]) {
        let _ = proxy_wasm::hostcalls::set_buffer(BufferType::HttpRequestBody, 0, self.size, body);
    }

    fn set_header(&mut self, name: &str, value: Option<&[u8]>) {
        let _ =
            proxy_wasm::hostcalls::set_map_value_bytes(MapType::HttpRequestHeaders, name, value);
    }
}

/// Sends a local reply (with the request's id when the client is to get it).
pub fn reply(reply: &Reply, request_id: Option<&str>) {
    if let Err(e) = send_local_response(reply.status, &reply.headers(request_id), &reply.body) {
        log::warn!("switchyard: local reply refused by the host: {e:?}");
    }
}

/// Writes single header values (`None`: removes), ignoring the host's refusals.
pub fn set_each(map: MapType, writes: &[(&str, Option<Vec<u8>>)]) {
    for (name, value) in writes {
        let _ = set_map_value(map, name, value.as_deref());
    }
}

/// The body chunk being processed (the last callback of a stream may be empty).
pub fn body_chunk(buffer: BufferType, size: usize) -> Vec<u8> {
    if size == 0 {
        return Vec::new();
    }
    proxy_wasm::hostcalls::get_buffer(buffer, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// A property Envoy keeps for the stream (`None` when it has none).
pub fn property(path: Vec<&str>) -> Option<Vec<u8>> {
    proxy_wasm::hostcalls::get_property(path).ok().flatten()
}

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_register_shared_queue(name_data: *const u8, name_size: usize, id: *mut u32) -> Status;
    fn proxy_resolve_shared_queue(
        vm_id_data: *const u8,
        vm_id_size: usize,
        name_data: *const u8,
        name_size: usize,
        id: *mut u32,
    ) -> Status;
    fn proxy_enqueue_shared_queue(id: u32, data: *const u8, size: usize) -> Status;
    fn proxy_dequeue_shared_queue(id: u32, data: *mut *mut u8, size: *mut usize) -> Status;
}

/// Registers the shared queue `name` of this VM (the records service's), returning its id.
pub fn register_queue(name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: `name` lives for the call; the host writes the id into `id`.
    let status = unsafe { proxy_register_shared_queue(name.as_ptr(), name.len(), &mut id) };
    matches!(status, Status::Ok).then_some(id)
}

/// The id of the shared queue `name` registered by VM `vm_id`, once it exists. (The SDK's
/// resolve, enqueue and dequeue panic, trapping the VM, on a status they do not expect.)
pub fn resolve_queue(vm_id: &str, name: &str) -> Option<u32> {
    let mut id = 0;
    // SAFETY: both slices live for the call; the host writes the id into `id`.
    let status = unsafe {
        proxy_resolve_shared_queue(
            vm_id.as_ptr(),
            vm_id.len(),
            name.as_ptr(),
            name.len(),
            &mut id,
        )
    };
    matches!(status, Status::Ok).then_some(id)
}

/// Adds `data` to shared queue `id` (the host copies it).
pub fn enqueue(id: u32, data: &[u8]) -> Result<(), Status> {
    // SAFETY: `data` lives for the call; the host copies it.
    unsafe { result(proxy_enqueue_shared_queue(id, data.as_ptr(), data.len())) }
}

/// The next item of shared queue `id`, if any.
pub fn dequeue(id: u32) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: on success the host returns a buffer it allocated through this module's
    // `proxy_on_memory_allocate` (a leaked `Vec<u8>` of exactly `size` bytes), whose ownership
    // passes to us, as in `header_block`.
    unsafe {
        match proxy_dequeue_shared_queue(id, &mut data, &mut size) {
            Status::Ok if !data.is_null() => Some(Vec::from_raw_parts(data, size, size)),
            _ => None,
        }
    }
}
