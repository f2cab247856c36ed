# Embeds the OpenCL kernel files into the library at build time: each file becomes a byte array
# in a generated .cpp, with a table from file name to text, so the library never looks files up
# at run time (FLASHCL_KERNEL_DIR overrides this for kernel work). Regenerated when a file changes.
function(flashcl_embed_kernels)
  cmake_parse_arguments(ARG "" "OUTPUT" "FILES" ${ARGN})
  set(abs_files "")
  foreach(f IN LISTS ARG_FILES)
    list(APPEND abs_files ${CMAKE_CURRENT_SOURCE_DIR}/${f})
  endforeach()
  add_custom_command(
    OUTPUT ${ARG_OUTPUT}
    COMMAND ${CMAKE_COMMAND} -DOUTPUT=${ARG_OUTPUT} "-DFILES=${abs_files}" -DKERNEL_ROOT=${CMAKE_CURRENT_SOURCE_DIR}/kernels
            -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed_kernels_script.cmake
    DEPENDS ${abs_files} ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed_kernels_script.cmake
    COMMENT "Embedding OpenCL kernels"
    VERBATIM)
endfunction()
