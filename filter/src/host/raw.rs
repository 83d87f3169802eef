//! The reads the request path makes, straight over the ABI. The SDK's wrappers
//! build a `Vec<&str>` path and serialize it into another `Vec` on every call,
//! copy header pairs into `String`s, and panic on a status they do not expect;
//! these take pre-serialized paths and treat any failure as an absent value.

use proxy_wasm::types::MapType;

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
