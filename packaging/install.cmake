# cmake --install: the shared library (with its SONAME link), kimi_linear.h, the kimi CLI (when
# KL_BUILD_TOOLS), a CMake package (find_package(KimiLinear) -> KimiLinear::kimi_linear),
# kimi-linear.pc (its Libs with an rpath to libdir) and the CUDA plugin when built.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
install(TARGETS kimi_linear EXPORT KimiLinearTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The CUDA backend's plugin (target kimi_linear_cuda, built only with CUDA, its file named
# KL_CUDA_PLUGIN_FILE, the name the C library opens from its own folder): installed beside it,
# and carried by every package that carries the C library (bindings/java, bindings/csharp, the
# wheel).
if(TARGET kimi_linear_cuda)
  install(TARGETS kimi_linear_cuda LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
endif()
# A package's staging step: after TARGET is built, the plugin (when built) is copied into DIR,
# the folder where the package keeps its copy of the C library.
function(kl_stage_cuda_plugin target dir)
  if(TARGET kimi_linear_cuda)
    add_dependencies(${target} kimi_linear_cuda)
    add_custom_command(TARGET ${target} POST_BUILD
      COMMAND ${CMAKE_COMMAND} -E copy_if_different $<TARGET_FILE:kimi_linear_cuda>
              ${dir}/${KL_CUDA_PLUGIN_FILE}
      VERBATIM)
  endif()
endfunction()
install(FILES ${PROJECT_SOURCE_DIR}/capi/include/kimi_linear.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET kimi)  # KL_BUILD_TOOLS
  # The installed CLI finds the installed library wherever the prefix is (bin/../lib).
  set_target_properties(kimi PROPERTIES INSTALL_RPATH "$ORIGIN/../${CMAKE_INSTALL_LIBDIR}")
  install(TARGETS kimi RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
set(KL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/KimiLinear)
install(EXPORT KimiLinearTargets NAMESPACE KimiLinear:: DESTINATION ${KL_CMAKE_DIR})
configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/cmake/KimiLinearConfig.cmake.in
  ${CMAKE_CURRENT_BINARY_DIR}/KimiLinearConfig.cmake INSTALL_DESTINATION ${KL_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/KimiLinearConfigVersion.cmake
  COMPATIBILITY SameMajorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/KimiLinearConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/KimiLinearConfigVersion.cmake
        DESTINATION ${KL_CMAKE_DIR})
# The prefix is known only at install time (cmake --install --prefix P): write the .pc then.
install(CODE "
  set(CMAKE_INSTALL_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(CMAKE_INSTALL_LIBDIR \"${CMAKE_INSTALL_LIBDIR}\")
  set(CMAKE_INSTALL_INCLUDEDIR \"${CMAKE_INSTALL_INCLUDEDIR}\")
  set(PROJECT_VERSION \"${PROJECT_VERSION}\")
  configure_file(\"${CMAKE_CURRENT_LIST_DIR}/kimi-linear.pc.in\"
                 \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/kimi-linear.pc\" @ONLY)
  message(STATUS \"Installing: \${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LIBDIR}/pkgconfig/kimi-linear.pc\")
")
