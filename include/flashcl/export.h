/* flashcl/export.h: FLASHCL_API (and its C spelling FCL_API), the mark on every public function
 * and class. Building the shared library (FLASHCL_BUILDING, set by flashcl's CMake) it exports the
 * symbol: dllexport on Windows, default visibility elsewhere (the library is built with hidden
 * visibility, so nothing else leaks). A consumer of the shared library imports it (dllimport on
 * Windows). A static build defines FLASHCL_STATIC for the library and for every consumer (CMake's
 * flashcl::flashcl and flashcl.pc carry it), and the mark is empty. */
#ifndef FLASHCL_EXPORT_H
#define FLASHCL_EXPORT_H

#if defined(FLASHCL_STATIC)
#define FLASHCL_API
#elif defined(_WIN32) || defined(__CYGWIN__)
#ifdef FLASHCL_BUILDING
#define FLASHCL_API __declspec(dllexport)
#else
#define FLASHCL_API __declspec(dllimport)
#endif
#elif defined(__GNUC__) || defined(__clang__)
#define FLASHCL_API __attribute__((visibility("default")))
#else
#define FLASHCL_API
#endif

#define FCL_API FLASHCL_API

#endif /* FLASHCL_EXPORT_H */
