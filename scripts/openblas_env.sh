# Sourced by demo.sh and benchmark runs (not by tests or CI). Debian 12's OpenBLAS (0.3.21) does
# not know recent CPUs (Sapphire Rapids, for one) and falls back to its slowest kernel (Prescott)
# on them: 3x slower matrix products. Unless the caller chose a kernel, pick the newest one the
# CPU's flags support.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -r /proc/cpuinfo ]; then
  _flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
  case "$_flags" in
    *avx512f*avx512dq*avx512bw*avx512vl*) export OPENBLAS_CORETYPE=SkylakeX ;;
    *avx2*) case "$_flags" in *fma*) export OPENBLAS_CORETYPE=Haswell ;; esac ;;
  esac
  unset _flags
fi
