//! Peak stack use, for the measurements (`bench/boot.sh`): paint the free
//! stack with a pattern, later find the deepest word that changed.

const PATTERN: u32 = 0xDEAD_BEEF;

extern "C" {
    static mut __sheap: u32;
    static _stack_start: u32;
}

fn bounds() -> (usize, usize) {
    // Linker symbols (cortex-m-rt's); only their addresses are taken.
    (
        core::ptr::addr_of!(__sheap) as usize,
        core::ptr::addr_of!(_stack_start) as usize,
    )
}

/// Paint the free stack below the caller's frame; returns the stack in use
/// at the call.
#[inline(never)]
pub fn paint() -> usize {
    let (bottom, top) = bounds();
    let sp = cortex_m::register::msp::read() as usize;
    let mut p = bottom;
    while p < sp - 64 {
        // SAFETY: between the end of static data and below the live stack.
        unsafe { core::ptr::write_volatile(p as *mut u32, PATTERN) };
        p += 4;
    }
    top - sp
}

/// The deepest stack use since [`paint`].
pub fn used() -> usize {
    let (bottom, top) = bounds();
    let mut p = bottom;
    // SAFETY: reading RAM between the end of static data and the stack top.
    while p < top && unsafe { core::ptr::read_volatile(p as *const u32) } == PATTERN {
        p += 4;
    }
    top - p
}
