# A dependency that only some optional targets need is looked up where those targets are defined,
# never at the top: configuring the library alone (examples, benchmarks, CLI and tests off) must not
# need CLI11 or Google Benchmark.

# find_package(<package> CONFIG) for the targets behind <option>; missing, a message that names the
# package, what needs it and how to do without it, instead of CMake's generic search report.
function(tapegrad_require_package package option install_hint)
  find_package(${package} CONFIG QUIET)
  if(NOT ${package}_FOUND)
    message(FATAL_ERROR "${option}=ON needs ${package}, which was not found (${install_hint}). "
                        "Install it (scripts/deps.sh does), point CMAKE_PREFIX_PATH at it, "
                        "or configure with -D${option}=OFF.")
  endif()
endfunction()
