# [K] tf32: float, 8 exponent and 10 fraction bits, bias 127, max 3.4011621342146535e+38, subnormals, Inf, 1023 high NaN codes, overflow to Inf/NaN
cdef inline double q_K(double v, int mode, uint64_t sr, int srn) noexcept nogil:
    return float_round(v, 11, 127, 1, 1, 1,
                       1, 1, 0, 3.4011621342146535e+38, mode, sr, srn)


cdef inline double qp_K(int neg, int E, uint64_t sig, int sticky, int mode, uint64_t sr,
                                    int srn) noexcept nogil:
    return float_from_parts(neg, E, sig, sticky, 11, 127, 1, 1,
                            1, 1, 1, 0, 3.4011621342146535e+38,
                            mode, sr, srn)


cdef inline uint64_t enc_K(double r) noexcept nogil:
    return float_encode(r, 19, 10, 127, 1, 1, 1,
                        1, 0x7ffffULL, 0x3fc00ULL, 0x7fc00ULL,
                        0x3fbffULL, 0x7fbffULL, 3.4011621342146535e+38, 1.1479437019748901e-41)


cdef inline double dec_K(uint64_t c) noexcept nogil:
    return float_decode(c, 19, 10, 8, 127, 1, 1,
                        1, 1, 1, 1023)


def quantize_K(x, out, int mode, rbits, int srn):
    """float64 x rounded once to the format, into float64 out (x's length; may be x itself) with
    rounding `mode` (MODES); stochastic rounding reads one value of rbits (uint64) per input, of
    srn bits. Checked here."""
    x, out = checked_pair("quantize_K", x, out, np.float64, np.float64)
    rbits = checked_rounding("quantize_K", mode, rbits, x.shape[0], srn)
    quantize_K_unchecked(x, out, mode, rbits, srn)


cdef void quantize_K_range(const double* x, double* out, int mode, const uint64_t* rbits, int srn,
                                       Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t b, e
    cdef uint64_t a, s, r, m, fast, slow
    if mode == STOCHASTIC:
        for i in range(lo, hi):
            out[i] = q_K(x[i], mode, rbits[i], srn)
    elif mode == RNE:
        # nearest-even on the bits: in the format's normal range, adding half an ulp less one
        # plus the kept LSB and truncating is the rounding. Branch-free, so that it vectorises:
        # an input outside that range is copied as it is, and noted; then, only in a block of
        # BLOCK where one was, a second pass rounds those (out holds them; a rounded value is
        # in the range, and stays).
        b = lo
        while b < hi:
            e = hi if b + BLOCK > hi else b + BLOCK
            slow = 0
            for i in range(b, e):
                a = archc_bits(x[i])
                s = a & 0x8000000000000000ULL
                a = a ^ s
                r = (a + 0x1ffffffffffULL + ((a >> 42) & 1)) & 0xfffffc0000000000ULL
                fast = in_fast_range(a, r, 0x3810000000000000ULL, 0x47efffffffffffffULL, 0x47effc0000000000ULL)
                slow |= fast ^ 1
                m = 0 - fast
                out[i] = archc_double(((r & m) | (a & ~m)) | s)
            if slow:
                for i in range(b, e):
                    a = archc_bits(out[i]) & 0x7FFFFFFFFFFFFFFFULL
                    r = (a + 0x1ffffffffffULL + ((a >> 42) & 1)) & 0xfffffc0000000000ULL
                    if not in_fast_range(a, r, 0x3810000000000000ULL, 0x47efffffffffffffULL, 0x47effc0000000000ULL):
                        out[i] = q_K(out[i], mode, 0, 0)
            b = e
    else:
        for i in range(lo, hi):
            out[i] = q_K(x[i], mode, 0, 0)


cdef void quantize_K_unchecked(const double[::1] x, double[::1] out, int mode, const uint64_t[::1] rbits,
                                           int srn):
    cdef Py_ssize_t c, n = x.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return
    cdef const double* xp = &x[0]
    cdef double* op = &out[0]
    cdef const uint64_t* rp = &rbits[0]
    if t == 1:
        quantize_K_range(xp, op, mode, rp, srn, 0, n)
        return
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        quantize_K_range(xp, op, mode, rp, srn, c * CHUNK, chunk_end(c, n))


def quantize32_K(x, out, int mode, rbits, int srn):
    """quantize_K with float32 x and out: every value of this format is a float32, and
    rounding the exact float32 input once is the same as rounding its float64 value."""
    x, out = checked_pair("quantize32_K", x, out, np.float32, np.float32)
    rbits = checked_rounding("quantize32_K", mode, rbits, x.shape[0], srn)
    quantize32_K_unchecked(x, out, mode, rbits, srn)


cdef void quantize32_K_range(const float* x, float* out, int mode, const uint64_t* rbits, int srn,
                                         Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint32_t a, s, r
    cdef const uint32_t* xp = <const uint32_t*>x
    cdef uint32_t* op = <uint32_t*>out
    if mode == RNE:
        # float32's own exponent range, subnormals, Inf and NaN: the carry trick is the rounding
        # for every input but NaN, which a branch-free select keeps (quieted); this loop vectorises
        for i in range(lo, hi):
            a = xp[i]
            r = (a + 0xfffU + ((a >> 13) & 1)) & 0xffffe000U
            s = <uint32_t>(-<int>((a & 0x7FFFFFFFU) > 0x7F800000U))
            op[i] = (r & ~s) | ((a | 0x00400000U) & s)
        return
    if mode == RNE:
        for i in range(lo, hi):
            a = archc_bits32(x[i])
            s = a & 0x80000000U
            a = a ^ s
            if a >= 0x800000U and a <= 0x7f7fffffU:
                r = (a + 0xfffU + ((a >> 13) & 1)) & 0xffffe000U
                if r <= 0x7f7fe000U:
                    out[i] = archc_float(r | s)
                    continue
            out[i] = <float>q_K(<double>x[i], mode, 0, 0)
    else:
        for i in range(lo, hi):
            out[i] = <float>q_K(<double>x[i], mode, rbits[i] if mode == STOCHASTIC else 0, srn)


cdef void quantize32_K_unchecked(const float[::1] x, float[::1] out, int mode, const uint64_t[::1] rbits,
                                             int srn):
    cdef Py_ssize_t c, n = x.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return
    cdef const float* xp = &x[0]
    cdef float* op = &out[0]
    cdef const uint64_t* rp = &rbits[0]
    if t == 1:
        quantize32_K_range(xp, op, mode, rp, srn, 0, n)
        return
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        quantize32_K_range(xp, op, mode, rp, srn, c * CHUNK, chunk_end(c, n))


def encode32_K(x, out):
    """Codes of float32 values rounded to nearest-even: the rounded float32's leading
    19 bits (this format shares float32's exponent field); NaN becomes the quiet NaN.
    out: uint32, x's length. Checked here."""
    x, out = checked_pair("encode32_K", x, out, np.float32, np.uint32)
    encode32_K_unchecked(x, out)


cdef void encode32_K_range(const uint32_t* xp, uint32_t* out, Py_ssize_t lo,
                                       Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef uint32_t a, r, s
    for i in range(lo, hi):
        a = xp[i]
        r = (a + 0xfffU + ((a >> 13) & 1)) & 0xffffe000U
        s = <uint32_t>(-<int>((a & 0x7FFFFFFFU) > 0x7F800000U))
        r = (r & ~s) | ((a | 0x7FFFFFFFU) & s)  # NaN: all ones below the sign, as gfloat's code
        out[i] = <uint32_t>(r >> 13)


cdef void encode32_K_unchecked(const float[::1] x, uint32_t[::1] out):
    cdef Py_ssize_t c, n = x.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return
    cdef const uint32_t* xp = <const uint32_t*>&x[0]
    cdef uint32_t* op = &out[0]
    if t == 1:
        encode32_K_range(xp, op, 0, n)
        return
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        encode32_K_range(xp, op, c * CHUNK, chunk_end(c, n))


def encode_K(x, out):
    """Codes (uint64 out, x's length) of float64 x rounded to nearest-even. Checked here."""
    x, out = checked_pair("encode_K", x, out, np.float64, np.uint64)
    encode_K_unchecked(x, out)


cdef void encode_K_range(const double* x, uint64_t* out, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef Py_ssize_t b, e
    cdef uint64_t a, s, r, fast, slow
    b = lo
    while b < hi:
        # as quantize's fast path; a rounded value in the format's normal range has the code of
        # its float64 fields: sign, exponent rebiased, the leading 10 fraction bits. No
        # branch: values outside that range are noted, and encoded by a second pass over the
        # block, only then.
        e = hi if b + BLOCK > hi else b + BLOCK
        slow = 0
        for i in range(b, e):
            a = archc_bits(x[i])
            s = a & 0x8000000000000000ULL
            a = a ^ s
            r = (a + 0x1ffffffffffULL + ((a >> 42) & 1)) & 0xfffffc0000000000ULL
            fast = in_fast_range(a, r, 0x3810000000000000ULL, 0x47efffffffffffffULL, 0x47effc0000000000ULL)
            slow |= fast ^ 1
            out[i] = (s >> 45) | (((r >> 52) - 896) << 10) \
                | ((r >> 42) & 1023ULL)
        if slow:
            for i in range(b, e):
                a = archc_bits(x[i]) & 0x7FFFFFFFFFFFFFFFULL
                r = (a + 0x1ffffffffffULL + ((a >> 42) & 1)) & 0xfffffc0000000000ULL
                if not in_fast_range(a, r, 0x3810000000000000ULL, 0x47efffffffffffffULL, 0x47effc0000000000ULL):
                    out[i] = enc_K(q_K(x[i], RNE, 0, 0))
        b = e


cdef void encode_K_unchecked(const double[::1] x, uint64_t[::1] out):
    cdef Py_ssize_t c, n = x.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return
    cdef const double* xp = &x[0]
    cdef uint64_t* op = &out[0]
    if t == 1:
        encode_K_range(xp, op, 0, n)
        return
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        encode_K_range(xp, op, c * CHUNK, chunk_end(c, n))


def decode_K(codes, out):
    """Values (float64 out, codes' length) of uint64 codes; returns how many codes have more
    than the format's 19 bits (their values are not meaningful). Checked here."""
    codes, out = checked_pair("decode_K", codes, out, np.uint64, np.float64, "codes")
    return decode_K_unchecked(codes, out)


cdef inline uint64_t normal_code_K(uint64_t c, uint64_t mag) noexcept nogil:
    """1 if c (magnitude bits mag) is a normal finite code: no bit beyond the format's 19,
    an exponent field of at least 1, no more than the largest finite code (the sign bit of
    each difference is the comparison, which vectorises)."""
    return (((mag - 1024ULL) | (0x3fbffULL - mag) | (0 - (c >> 19))) >> 63) ^ 1


cdef Py_ssize_t decode_K_range(const uint64_t* codes, double* out, const double* table, Py_ssize_t lo,
                                           Py_ssize_t hi) noexcept nogil:
    """Values; returns the number of codes wider than the format. A normal code's value is
    its fields moved into a float64's, branch-free (formats of up to 16 bits read a table
    instead, faster here); a block of BLOCK with any other code (zero, subnormal, Inf, NaN, too
    wide) takes those from the general decoder in a second pass."""
    cdef Py_ssize_t i, b, e, wide = 0
    cdef uint64_t c, mag, slow
    b = lo
    while b < hi:
        e = hi if b + BLOCK > hi else b + BLOCK
        slow = 0
        for i in range(b, e):
            c = codes[i]
            mag = c & 262143ULL
            slow |= normal_code_K(c, mag) ^ 1
            out[i] = archc_double((((c >> 18) & 1) << 63) | (((mag >> 10) + 896) << 52)
                                  | ((mag & 1023ULL) << 42))
        if slow:
            for i in range(b, e):
                c = codes[i]
                if not normal_code_K(c, c & 262143ULL):
                    out[i] = dec_K(c)
                    wide += (c >> 19) != 0
        b = e
    return wide


cdef Py_ssize_t decode_K_unchecked(const uint64_t[::1] codes, double[::1] out):
    cdef Py_ssize_t c, wide = 0, n = codes.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return 0
    cdef const uint64_t* cp = &codes[0]
    cdef double* op = &out[0]
    cdef const double* tp = NULL
    if t == 1:
        return decode_K_range(cp, op, tp, 0, n)
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        wide += decode_K_range(cp, op, tp, c * CHUNK, chunk_end(c, n))
    return wide


