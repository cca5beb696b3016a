// How a large array is cut into requests: consecutive chunks of at most chunk_rows rows, in order.
#ifndef CALSURR_SRC_CHUNKING_HPP
#define CALSURR_SRC_CHUNKING_HPP

#include <algorithm>
#include <cstdint>

namespace calsurr::detail {

/// Rows per request when neither the caller nor the server says: the server's own default preferred batch.
constexpr int64_t DEFAULT_CHUNK_ROWS = 4096;

struct Chunk {
  int64_t offset;  ///< first row
  int64_t rows;
};

class ChunkPlan {
 public:
  ChunkPlan(int64_t n_rows, int64_t chunk_rows) : n_rows_(n_rows), chunk_rows_(std::max<int64_t>(1, chunk_rows)) {}
  int64_t count() const { return n_rows_ <= 0 ? 0 : (n_rows_ + chunk_rows_ - 1) / chunk_rows_; }
  Chunk chunk(int64_t index) const {
    const int64_t offset = index * chunk_rows_;
    return {offset, std::min(chunk_rows_, n_rows_ - offset)};
  }
  int64_t rows() const { return n_rows_; }
  int64_t chunk_rows() const { return chunk_rows_; }

 private:
  int64_t n_rows_;
  int64_t chunk_rows_;
};

/// Rows per request for a model: the caller's chunk_rows, else the server's preferred batch size, else its
/// max_batch_size, else DEFAULT_CHUNK_ROWS; never above max_batch_size (the server refuses more) nor above what
/// fits in a message of max_message_bytes with room for the envelope. 0 means unknown for the server's numbers.
inline int64_t chunk_rows_for(int64_t requested, int64_t preferred, int64_t max_batch, int64_t row_bytes,
                              int64_t max_message_bytes) {
  int64_t rows = requested > 0 ? requested : preferred > 0 ? preferred : max_batch > 0 ? max_batch : DEFAULT_CHUNK_ROWS;
  if (max_batch > 0) rows = std::min(rows, max_batch);
  if (row_bytes > 0 && max_message_bytes > 0) {
    const int64_t envelope = 64 * 1024;
    rows = std::min(rows, std::max<int64_t>(1, (max_message_bytes - envelope) / row_bytes));
  }
  return std::max<int64_t>(1, rows);
}

}  // namespace calsurr::detail

#endif
