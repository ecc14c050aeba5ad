// KVD_CHECK: crash loudly on a broken internal invariant (STYLE.md §11).
// Never use it on data that came from outside the process: validate that and
// return a Status instead.
#ifndef KVDEPOT_CORE_CHECK_H_
#define KVDEPOT_CORE_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define KVD_CHECK(cond, msg)                                                 \
  do {                                                                       \
    if (!(cond)) [[unlikely]] {                                              \
      std::fprintf(stderr, "%s:%d: invariant violated: %s (%s)\n", __FILE__, \
                   __LINE__, #cond, msg);                                    \
      std::abort();                                                          \
    }                                                                        \
  } while (0)

#endif  // KVDEPOT_CORE_CHECK_H_
