#pragma once
// Which OpenBLAS kernel is in force, and whether the CPU supports a faster one (README, "OpenBLAS
// kernel"): shared by the demo and the benchmarks, which print it.

#include <fmt/format.h>

#include <cstdlib>
#include <fstream>
#include <string>

extern "C" {
// OpenBLAS's own entry points (its cblas.h is not on every example's include path).
char* openblas_get_corename(void);
char* openblas_get_config(void);
int openblas_get_num_threads(void);
}

namespace examples {

// Higher is faster on the CPUs that support it; 0 for a name not listed.
inline int kernel_rank(std::string name) {
  for (char& c : name)
    c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  for (const auto& [n, r] : {std::pair{"prescott", 1},
                             {"core2", 1},
                             {"penryn", 1},
                             {"atom", 1},
                             {"nehalem", 2},
                             {"sandybridge", 3},
                             {"haswell", 4},
                             {"zen", 4},
                             {"skylakex", 5},
                             {"cooperlake", 6},
                             {"sapphirerapids", 7}})
    if (name == n) return r;
  return 0;
}

// The newest x86-64 kernel of OpenBLAS 0.3.21 that the CPU's flags (/proc/cpuinfo) support, or "".
inline std::string supported_kernel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("flags", 0) == 0) {
      const std::string f = line + " ";
      auto has = [&](const char* x) { return f.find(std::string(" ") + x + " ") != std::string::npos; };
      if (has("avx512f") && has("avx512dq") && has("avx512bw") && has("avx512vl"))
        return has("avx512_bf16") ? "Cooperlake" : "SkylakeX";
      if (has("avx2") && has("fma")) return "Haswell";
      return "";
    }
  return "";
}

struct BlasKernel {
  std::string name, config, supported;
  bool slower; // a kernel older than the CPU supports is in force
};

inline BlasKernel blas_kernel() {
  BlasKernel k{openblas_get_corename(), openblas_get_config(), supported_kernel(), false};
  k.slower = kernel_rank(k.name) < kernel_rank(k.supported);
  return k;
}

// One line for a program's header, and a warning line when the kernel is slower than the CPU's.
inline std::string describe_blas_kernel() {
  const BlasKernel k = blas_kernel();
  std::string s = fmt::format("OpenBLAS kernel: {} ({})", k.name, k.config);
  if (k.slower)
    s += fmt::format("\nwarning: OpenBLAS runs the {} kernel but this CPU supports {}: matrix products are slower "
                     "than they could be (OPENBLAS_CORETYPE={} is set? source scripts/openblas_env.sh)",
                     k.name, k.supported, std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "");
  return s;
}

} // namespace examples
