// The smallest program that compiles tbcluster.h with its implementation. `make test` builds it in every
// configuration the header promises: gcc and clang, C11 and C99, C++17, TBC_STATIC, TBC_NO_RDMA, and for
// aarch64-macos with Zig. It returns 0 when the library answers at all.
#define TBC_IMPLEMENTATION
#include "../../tbcluster.h"

#include <string.h>

int main(void) {
    const char *ok = tbc_result_str(TBC_OK);
    return ok != NULL && strlen(ok) > 0 ? 0 : 1;
}
