// A large array is cut into consecutive chunks of the server's preferred batch size, in order.
#include "chunking.hpp"
#include "unit.hpp"

using calsurr::detail::ChunkPlan;
using calsurr::detail::chunk_rows_for;

TEST(chunking_a_million_rows) {
  const ChunkPlan plan(1'000'000, 4096);
  CHECK_EQ(plan.count(), int64_t{245});
  int64_t next = 0;
  for (int64_t i = 0; i < plan.count(); ++i) {
    const auto chunk = plan.chunk(i);
    CHECK_EQ(chunk.offset, next);
    CHECK(chunk.rows >= 1 && chunk.rows <= 4096);
    if (i + 1 < plan.count()) CHECK_EQ(chunk.rows, int64_t{4096});
    next += chunk.rows;
  }
  CHECK_EQ(next, int64_t{1'000'000});
  CHECK_EQ(plan.chunk(244).rows, int64_t{1'000'000 - 244 * 4096});
}

TEST(chunking_edges) {
  CHECK_EQ(ChunkPlan(0, 4096).count(), int64_t{0});
  CHECK_EQ(ChunkPlan(1, 4096).count(), int64_t{1});
  CHECK_EQ(ChunkPlan(4096, 4096).count(), int64_t{1});
  CHECK_EQ(ChunkPlan(4097, 4096).count(), int64_t{2});
  CHECK_EQ(ChunkPlan(4097, 4096).chunk(1).rows, int64_t{1});
  CHECK_EQ(ChunkPlan(10, 1).count(), int64_t{10});
  CHECK_EQ(ChunkPlan(10, 0).chunk_rows(), int64_t{1});  // never zero rows per chunk
}

TEST(chunk_rows_from_options_then_server) {
  const int64_t row = 4 * 4 * 8, message = 64 << 20;
  CHECK_EQ(chunk_rows_for(1000, 4096, 65536, row, message), int64_t{1000});  // the caller's
  CHECK_EQ(chunk_rows_for(0, 4096, 65536, row, message), int64_t{4096});     // preferred_batch_size[0]
  CHECK_EQ(chunk_rows_for(0, 0, 8192, row, message), int64_t{8192});         // max_batch_size
  CHECK_EQ(chunk_rows_for(0, 0, 0, row, message), int64_t{4096});            // the default
  CHECK_EQ(chunk_rows_for(100000, 4096, 65536, row, message), int64_t{65536});  // never above max_batch_size
  CHECK_EQ(chunk_rows_for(0, 0, 0, 1024, 1 << 20), int64_t{960});  // what fits in a message, envelope aside
}
