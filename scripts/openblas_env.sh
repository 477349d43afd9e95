# Sourced by demo.sh and benchmark runs (not by tests or CI): makes OpenBLAS use the fastest kernel
# the CPU supports. Two ways to get a slower one:
#  - a preset OPENBLAS_CORETYPE naming an older kernel (a container image that pins Haswell, say):
#    OpenBLAS obeys it. When it ranks below what OpenBLAS detects on its own, or below what the
#    CPU's flags support, this script says so and removes it; TAPEGRAD_KEEP_CORETYPE=1 keeps it.
#  - an OpenBLAS older than the CPU (Debian 12's 0.3.21 on Sapphire Rapids, for one) detects
#    nothing it knows and falls back to Prescott, its slowest kernel (3x slower matrix products):
#    then the newest kernel the flags support is set.
# OPENBLAS_L2_SIZE is a build-time setting of OpenBLAS; 0.3.21 reads no such variable (its
# environment is OPENBLAS_CORETYPE, OPENBLAS_NUM_THREADS, GOTO_NUM_THREADS, OMP_NUM_THREADS,
# OPENBLAS_THREAD_TIMEOUT, OPENBLAS_BLOCK_FACTOR, OPENBLAS_VERBOSE, OMP_ADAPTIVE), so it is left alone.

# Rank of a kernel name (case-insensitive), higher is faster on the CPUs that support it; 0 unknown.
_tg_rank() {
  case "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')" in
    prescott | katmai | coppermine | northwood | banias | atom | core2 | penryn | dunnington | opteron | opteron_sse3 | barcelona | bobcat) echo 1 ;;
    nehalem | bulldozer | piledriver) echo 2 ;;
    sandybridge | steamroller | excavator) echo 3 ;;
    haswell | zen) echo 4 ;;
    skylakex) echo 5 ;;
    cooperlake) echo 6 ;;
    sapphirerapids) echo 7 ;;
    *) echo 0 ;;
  esac
}

# What the CPU's flags support.
_tg_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
_tg_supported=
case " $_tg_flags " in
  *" avx512f "*)
    case " $_tg_flags " in
      *" avx512dq "*) case " $_tg_flags " in
        *" avx512bw "*) case " $_tg_flags " in
          *" avx512vl "*) _tg_supported=SkylakeX
            case " $_tg_flags " in *" avx512_bf16 "*) _tg_supported=Cooperlake ;; esac ;;
        esac ;;
      esac ;;
    esac ;;
esac
if [ -z "$_tg_supported" ]; then
  case " $_tg_flags " in *" avx2 "*) case " $_tg_flags " in *" fma "*) _tg_supported=Haswell ;; esac ;; esac
fi

# What this OpenBLAS detects with nothing preset (asked through python3's ctypes, when present).
_tg_detected=$(env -u OPENBLAS_CORETYPE -u OPENBLAS_VERBOSE python3 -c '
import ctypes, ctypes.util
for name in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
    try:
        lib = ctypes.CDLL(name)
        lib.openblas_get_corename.restype = ctypes.c_char_p
        print(lib.openblas_get_corename().decode())
        break
    except Exception:
        pass
' 2>/dev/null || true)

# The best of the two.
_tg_best=$_tg_detected
if [ "$(_tg_rank "$_tg_supported")" -gt "$(_tg_rank "$_tg_best")" ]; then _tg_best=$_tg_supported; fi

if [ -n "${OPENBLAS_CORETYPE:-}" ]; then
  if [ "$(_tg_rank "$OPENBLAS_CORETYPE")" -lt "$(_tg_rank "$_tg_best")" ] && [ "${TAPEGRAD_KEEP_CORETYPE:-0}" != 1 ]; then
    echo "openblas_env.sh: OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE is slower than this CPU supports ($_tg_best); unset" \
      "(TAPEGRAD_KEEP_CORETYPE=1 keeps it)" >&2
    unset OPENBLAS_CORETYPE
  fi
fi
# Preset only what OpenBLAS does not find by itself.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && [ -n "$_tg_best" ] && [ "$_tg_best" != "$_tg_detected" ]; then
  export OPENBLAS_CORETYPE=$_tg_best
fi
unset _tg_flags _tg_supported _tg_detected _tg_best
unset -f _tg_rank
