//! Every host call the filter makes, straight over the ABI. The SDK's wrappers
//! build a `Vec<&str>` path and serialize it into another `Vec` on every call,
//! copy header pairs into `String`s, and panic on a status they do not expect
//! (a panic traps the VM and fails its traffic); these take pre-serialized paths,
//! treat a failed read as an absent value and return a failed write's status.

use proxy_wasm::types::{BufferType, LogLevel, MapType, MetricType};

/// Property paths in the host's serialized form: the parts joined by NUL.
pub const REQUEST_DURATION: &[u8] = b"request\0duration";
pub const RESPONSE_CODE_DETAILS: &[u8] = b"response\0code_details";
pub const SOURCE_ADDRESS: &[u8] = b"source\0address";
pub const TLS_VERSION: &[u8] = b"connection\0tls_version";
pub const PEER_DIGEST: &[u8] = b"connection\0sha256_peer_certificate_digest";
pub const PEER_CERTIFICATE: &[u8] = b"connection\0peer_certificate";
pub const XDS_CLUSTER_NAME: &[u8] = b"xds\0cluster_name";
pub const LISTENER_DIRECTION: &[u8] = b"xds\0listener_direction";
/// Where proxies before Envoy 1.40 have it.
pub const LISTENER_DIRECTION_OLD: &[u8] = b"listener_direction";

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: u32, return_data: *mut *mut u8, return_size: *mut usize) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_add_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_grpc_send(token: u32, message_data: *const u8, message_size: usize, end_stream: u32) -> u32;
    fn proxy_grpc_cancel(token: u32) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
}

/// Takes ownership of what the host returned: a buffer it allocated through our
/// `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes), or nothing.
///
/// # Safety
/// `data`/`size` must come from a host call that returned status 0 (Ok).
unsafe fn owned(status: u32, data: *mut u8, size: usize) -> Option<Vec<u8>> {
    if status != 0 || data.is_null() {
        return None;
    }
    Some(Vec::from_raw_parts(data, size, size))
}

/// The whole header map in the host's serialized form: one host call.
pub fn header_map_pairs(map: MapType) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: see `owned`.
    unsafe {
        let status = proxy_get_header_map_pairs(map as u32, &mut data, &mut size);
        owned(status, data, size)
    }
}

/// One header's value (the first, as Envoy joins none for `:status`).
pub fn header_value(map: MapType, name: &str) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: see `owned`.
    unsafe {
        let status = proxy_get_header_map_value(map as u32, name.as_ptr(), name.len(), &mut data, &mut size);
        owned(status, data, size)
    }
}

/// A property by its serialized path (the constants above).
pub fn property(path: &[u8]) -> Option<Vec<u8>> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: see `owned`.
    unsafe {
        let status = proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size);
        owned(status, data, size)
    }
}

/// Replaces every value of a header with one (the SDK's wrapper panics on a refusal).
pub fn replace_header(map: MapType, name: &str, value: &[u8]) -> Result<(), u32> {
    // SAFETY: the host only reads the two buffers during the call.
    match unsafe {
        proxy_replace_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    } {
        0 => Ok(()),
        status => Err(status),
    }
}

/// Removes every value of a header.
pub fn remove_header(map: MapType, name: &str) -> Result<(), u32> {
    // SAFETY: the host only reads the buffer during the call.
    match unsafe { proxy_remove_header_map_value(map as u32, name.as_ptr(), name.len()) } {
        0 => Ok(()),
        status => Err(status),
    }
}

fn status(code: u32) -> Result<(), u32> {
    match code {
        0 => Ok(()),
        other => Err(other),
    }
}

/// Adds a value beside any the header already has.
pub fn add_header(map: MapType, name: &str, value: &[u8]) -> Result<(), u32> {
    // SAFETY: the host only reads the two buffers during the call.
    status(unsafe {
        proxy_add_header_map_value(map as u32, name.as_ptr(), name.len(), value.as_ptr(), value.len())
    })
}

/// Up to `max` bytes of a buffer from `start`.
pub fn buffer(kind: BufferType, start: usize, max: usize) -> Result<Option<Vec<u8>>, u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: see `owned`.
    unsafe {
        match proxy_get_buffer_bytes(kind as u32, start, max, &mut data, &mut size) {
            0 => Ok(owned(0, data, size)),
            // NotFound: no such buffer (an empty configuration).
            1 => Ok(None),
            other => Err(other),
        }
    }
}

pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the host only reads the buffer during the call. Nothing to do if it refuses.
    let _ = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
}

/// Envoy's wasm log level, as the SDK numbers it (0 trace .. 5 critical).
pub fn log_level() -> Option<u32> {
    let mut level = 0u32;
    // SAFETY: the host writes one u32.
    status(unsafe { proxy_get_log_level(&mut level) }).ok()?;
    Some(level)
}

/// The host's wall clock in nanoseconds since the Unix epoch.
pub fn now_nanos() -> Option<u64> {
    let mut t = 0u64;
    // SAFETY: the host writes one u64.
    status(unsafe { proxy_get_current_time_nanoseconds(&mut t) }).ok()?;
    Some(t)
}

pub fn set_tick_period_ms(ms: u32) -> Result<(), u32> {
    // SAFETY: plain values.
    status(unsafe { proxy_set_tick_period_milliseconds(ms) })
}

pub fn define_metric(kind: MetricType, name: &str) -> Result<u32, u32> {
    let mut id = 0u32;
    // SAFETY: the host reads the name during the call and writes one u32.
    status(unsafe { proxy_define_metric(kind as u32, name.as_ptr(), name.len(), &mut id) })?;
    Ok(id)
}

pub fn increment_metric(id: u32, offset: i64) -> Result<(), u32> {
    // SAFETY: plain values.
    status(unsafe { proxy_increment_metric(id, offset) })
}

pub fn record_metric(id: u32, value: u64) -> Result<(), u32> {
    // SAFETY: plain values.
    status(unsafe { proxy_record_metric(id, value) })
}

/// Host status of a compare-and-swap that lost to another writer.
pub const CAS_MISMATCH: u32 = 8;

/// A value of the host's shared data (shared by every VM of the same `vm_id`) and its CAS
/// token; `(None, 0)` when the key is absent.
pub fn shared_data(key: &str) -> Result<(Option<Vec<u8>>, u32), u32> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: see `owned`.
    unsafe {
        match proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) {
            0 => Ok((owned(0, data, size), cas)),
            1 => Ok((None, 0)),
            other => Err(other),
        }
    }
}

/// Writes shared data if nobody wrote since `cas` was read (`0`: unconditionally).
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), u32> {
    // SAFETY: the host only reads the two buffers during the call.
    status(unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) })
}

/// Sets a property; Envoy keeps it as filter state `wasm.<path>` for the stream.
pub fn set_property(path: &[u8], value: &[u8]) -> Result<(), u32> {
    // SAFETY: the host only reads the two buffers during the call.
    status(unsafe { proxy_set_property(path.as_ptr(), path.len(), value.as_ptr(), value.len()) })
}

/// Opens a gRPC stream from the root context; the token names it in the stream callbacks.
/// The one SDK wrapper used: its dispatcher routes a stream's callbacks only to tokens it
/// registered itself. It panics on a status other than Ok, ParseFailure and InternalFailure;
/// Envoy's `Context::grpcStream` (source/extensions/common/wasm/context.cc) returns another
/// (BadArgument) only when it cannot make a client for the service, which for an `envoy_grpc`
/// service with `skip_cluster_check` it always can.
pub fn open_grpc_stream(service: &[u8], method: &str, metadata: &[(&str, &[u8])]) -> Result<u32, u32> {
    // The host takes the service as bytes; the SDK's signature says `&str`.
    let service = std::str::from_utf8(service).map_err(|_| 0u32)?;
    proxy_wasm::hostcalls::open_grpc_stream(service, crate::flagd::sync::SERVICE, method, metadata.to_vec())
        .map_err(|s| s as u32)
}

pub fn grpc_send(token: u32, message: &[u8], end_stream: bool) -> Result<(), u32> {
    // SAFETY: the host only reads the buffer during the call.
    status(unsafe { proxy_grpc_send(token, message.as_ptr(), message.len(), u32::from(end_stream)) })
}

pub fn grpc_cancel(token: u32) -> Result<(), u32> {
    // SAFETY: plain values.
    status(unsafe { proxy_grpc_cancel(token) })
}
