# Project-wide compile settings for our own targets: warnings (errors with TAPEGRAD_WERROR); optional sanitizers.
# -Werror only on request (scripts/test.sh asks): a newer compiler's new warning must not break a
# user's build of a release.
function(tapegrad_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic $<$<BOOL:${TAPEGRAD_WERROR}>:-Werror>)
endfunction()

if(TAPEGRAD_SANITIZE AND TAPEGRAD_SANITIZE_THREAD)
  message(FATAL_ERROR "TAPEGRAD_SANITIZE and TAPEGRAD_SANITIZE_THREAD cannot be combined (ASan and TSan exclude each other)")
endif()
if(TAPEGRAD_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
if(TAPEGRAD_SANITIZE_THREAD)
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()
