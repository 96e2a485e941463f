/* fuzz_utf8.c - libFuzzer harness for csrc/utf8.c.
 *
 * Input: 1 seed byte (split points), then the text.
 *
 * Checks the validator against two references in ref_ws.h (RFC 3629's table
 * of well-formed sequences, walked byte by byte, and an arithmetic decoder
 * that rejects overlongs, surrogates and > U+10FFFF afterwards), which must
 * also agree with each other:
 *   - whole feed: result, the offset of the first bad byte, completeness;
 *   - ws_utf8_valid on the whole text;
 *   - the text fed in random pieces, each in its own exactly-sized heap block
 *     (so the 16-byte fast path is caught by ASan if it reads past a piece):
 *     same result, same absolute offset, same completeness; once INVALID,
 *     later feeds return INVALID with offset 0;
 *   - zero-length feeds (data NULL) change nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "ref_ws.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  fz_rng rng;
  fz_rng_seed(&rng, data, 1);
  const uint8_t *in = data + 1;
  size_t n = size - 1;

  size_t ref_bad;
  int ref_complete;
  int ref_ok = ref_utf8_table(in, n, &ref_bad, &ref_complete);
  int ref_valid = ref_ok && ref_complete;
  CHECK(ref_utf8_decode(in, n) == ref_valid, "the two references disagree (table %d/%d)",
        ref_ok, ref_complete);

  /* Whole. */
  uint8_t *copy = fz_dup(in, n);
  ws_utf8 v;
  ws_utf8_init(&v);
  CHECK(ws_utf8_complete(&v), "a fresh validator is not complete");
  size_t bad = (size_t)-1;
  int r = ws_utf8_feed(&v, copy, n, &bad);
  CHECK(r == (ref_ok ? WS_UTF8_OK : WS_UTF8_INVALID), "whole: result %d, reference ok=%d", r,
        ref_ok);
  if (!ref_ok) CHECK(bad == ref_bad, "whole: bad offset %zu, reference %zu", bad, ref_bad);
  CHECK(ws_utf8_complete(&v) == ref_valid, "whole: complete %d, reference %d",
        ws_utf8_complete(&v), ref_valid);
  CHECK(ws_utf8_valid(copy, n) == ref_valid, "ws_utf8_valid %d, reference %d",
        ws_utf8_valid(copy, n), ref_valid);
  CHECK(memcmp(copy, in, n) == 0 || n == 0, "the validator wrote to its input");
  free(copy);

  /* Pieces. */
  ws_utf8_init(&v);
  size_t pos = 0;
  int failed = 0;
  while (pos < n) {
    size_t k = fz_piece(&rng, n - pos);
    uint8_t *piece = fz_dup(in + pos, k);
    if (fz_chance(&rng, 1, 8)) CHECK(ws_utf8_feed(&v, NULL, 0, NULL) ==
                                         (failed ? WS_UTF8_INVALID : WS_UTF8_OK),
                                     "an empty feed changed the result");
    bad = (size_t)-1;
    r = ws_utf8_feed(&v, piece, k, fz_chance(&rng, 1, 4) ? NULL : &bad);
    free(piece);
    if (failed) {
      CHECK(r == WS_UTF8_INVALID, "a failed validator recovered");
      CHECK(bad == 0 || bad == (size_t)-1, "after failure the offset is %zu, not 0", bad);
    } else if (r == WS_UTF8_INVALID) {
      CHECK(!ref_ok, "pieces: INVALID at %zu but the reference accepts", pos);
      if (bad != (size_t)-1)
        CHECK(pos + bad == ref_bad, "pieces: bad offset %zu, reference %zu", pos + bad,
              ref_bad);
      CHECK(ref_bad >= pos && ref_bad < pos + k, "pieces: failure reported in the wrong piece "
            "[%zu,+%zu), reference %zu", pos, k, ref_bad);
      failed = 1;
    } else {
      CHECK(ref_ok || ref_bad >= pos + k, "pieces: OK through %zu but the reference fails at "
            "%zu", pos + k, ref_bad);
    }
    pos += k;
  }
  CHECK(failed == !ref_ok, "pieces: failed %d, reference ok %d", failed, ref_ok);
  CHECK(ws_utf8_complete(&v) == ref_valid, "pieces: complete %d, reference %d",
        ws_utf8_complete(&v), ref_valid);
  return 0;
}
