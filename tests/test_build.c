// test_build: the header compiles with its implementation as C, and the result-code list is sound:
// TBC_OK is 0, every error is negative and distinct, every code has its own non-empty description, and
// an unknown code still gets a string. The list is walked through TBC_RESULT_LIST, so new codes are checked too.
#define TBC_IMPLEMENTATION
#include "../tbcluster.h"

#include <stdio.h>
#include <string.h>

static int passed, failed;

static void check(int ok, const char *what) {
    if (ok) {
        passed++;
    } else {
        failed++;
        printf("FAIL: %s\n", what);
    }
}

typedef struct code_entry {
    tbc_result code;
    int value;
    const char *name;
} code_entry;

static const code_entry codes[] = {
#define X(name, value, text) {name, value, #name},
    TBC_RESULT_LIST(X)
#undef X
};

int main(void) {
    const size_t n = sizeof codes / sizeof codes[0];
    char what[256];

    check(TBC_OK == 0, "TBC_OK is 0");
    check(n >= 2, "the list has more than TBC_OK");
    check(codes[0].code == TBC_OK, "TBC_OK comes first");

    int min_value = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = tbc_result_str(codes[i].code);
        snprintf(what, sizeof what, "%s has a non-empty description", codes[i].name);
        check(s != NULL && s[0] != '\0', what);
        snprintf(what, sizeof what, "%s equals its listed value %d", codes[i].name, codes[i].value);
        check((int)codes[i].code == codes[i].value, what);
        if (i > 0) {
            snprintf(what, sizeof what, "%s is negative", codes[i].name);
            check(codes[i].value < 0, what);
        }
        snprintf(what, sizeof what, "%s is not the unknown-code string", codes[i].name);
        check(s != NULL && strcmp(s, tbc_result_str((tbc_result)12345)) != 0, what);
        if (codes[i].value < min_value) min_value = codes[i].value;
        for (size_t j = 0; j < i; j++) {
            const char *t = tbc_result_str(codes[j].code);
            snprintf(what, sizeof what, "%s and %s have distinct values", codes[i].name, codes[j].name);
            check(codes[i].value != codes[j].value, what);
            snprintf(what, sizeof what, "%s and %s have distinct descriptions", codes[i].name, codes[j].name);
            check(s != NULL && t != NULL && strcmp(s, t) != 0, what);
        }
    }
    // The enum's sentinel must track the most negative code, or a new code was added without it.
    check((int)TBC_RESULT_MIN_ == min_value, "TBC_RESULT_MIN_ is the most negative code");
    // Codes outside the list still get a usable string.
    const char *unknown = tbc_result_str((tbc_result)(min_value - 1));
    check(unknown != NULL && unknown[0] != '\0', "a code below the list has a string");
    unknown = tbc_result_str((tbc_result)1);
    check(unknown != NULL && unknown[0] != '\0', "a positive code has a string");
    check(TBC_VERSION_MAJOR >= 0 && TBC_VERSION_MINOR >= 0 && TBC_VERSION_PATCH >= 0, "version macros exist");

    printf("test_build: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
