# [K] mxfp4: MX blocks of 32 x fp4_e2m1, E8M0 scale
cdef inline double q_sat_K(double v, int mode, uint64_t sr, int srn) noexcept nogil:
    return float_round(v, 2, 1, 1, 1, 1, 0, 0, 1,
                       6.0, mode, sr, srn)


def mx_quantize_K(x, scale_exp, out, int mode, rbits, int srn):
    """Each element divided by its block's scale 2^scale_exp, rounded to the element format
    with saturation (keeping its sign), and scaled back; a NaN scale makes the block NaN.
    float64 x and out, float64 scale_exp (one per block of 32); mode and rbits as
    quantize takes them. Checked here."""
    x, out = checked_pair("mx_quantize_K", x, out, np.float64, np.float64)
    scale_exp = checked("mx_quantize_K", "scale_exp", scale_exp, np.float64, 1, False)
    if scale_exp.shape[0] != (x.shape[0] + 31) // 32:
        raise ValueError(f"mx_quantize_K: scale_exp has {scale_exp.shape[0]} entries for the "
                         f"{(x.shape[0] + 31) // 32} blocks of 32 of x")
    rbits = checked_rounding("mx_quantize_K", mode, rbits, x.shape[0], srn)
    mx_quantize_K_unchecked(x, scale_exp, out, mode, rbits, srn)


cdef void mx_quantize_K_range(const double* x, const double* scale_exp, double* out, int mode,
                                          const uint64_t* rbits, int srn, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    cdef Py_ssize_t i
    cdef double se
    for i in range(lo, hi):
        se = scale_exp[i // 32]
        if se != se:
            out[i] = NAN
        else:
            out[i] = ldexp(q_sat_K(ldexp(x[i], -<int>se), mode,
                                               rbits[i] if mode == STOCHASTIC else 0, srn), <int>se)


cdef void mx_quantize_K_unchecked(const double[::1] x, const double[::1] scale_exp, double[::1] out,
                                              int mode, const uint64_t[::1] rbits, int srn):
    cdef Py_ssize_t c, n = x.shape[0]
    cdef int t = threads(n)
    if n == 0:
        return
    cdef const double* xp = &x[0]
    cdef const double* sp = &scale_exp[0]
    cdef double* op = &out[0]
    cdef const uint64_t* rp = &rbits[0]
    if t == 1:
        mx_quantize_K_range(xp, sp, op, mode, rp, srn, 0, n)
        return
    for c in prange((n + CHUNK - 1) // CHUNK, nogil=True, schedule="dynamic", num_threads=t):
        mx_quantize_K_range(xp, sp, op, mode, rp, srn, c * CHUNK, chunk_end(c, n))


