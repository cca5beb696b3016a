// The bookkeeping of one call's attempts: the Python client's _Attempts (service/client.py).
#ifndef CALSURR_SRC_RETRY_HPP
#define CALSURR_SRC_RETRY_HPP

#include <chrono>
#include <optional>

#include "calsurr/client.hpp"
#include "deadline.hpp"

namespace calsurr::detail {

/// Only UNAVAILABLE is retried: INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED would fail
/// the same way again, or should reach the caller.
inline bool retryable(StatusCode code) { return code == StatusCode::UNAVAILABLE; }

/// A uniform number in [0, 1) from a generator of this thread's own.
double uniform01();

class Attempts {
 public:
  Attempts(const RetryPolicy& policy, Deadline deadline) : policy_(policy), deadline_(deadline) {}

  /// Count an attempt about to start.
  void begin() { ++attempt_; }
  int attempt() const { return attempt_; }
  Deadline deadline() const { return deadline_; }

  /// The wait before the next attempt after one that ended with `code`, or nothing to give up: `code` is not
  /// retryable, the attempts are used up, or the wait would reach the deadline.
  std::optional<Clock::duration> pause_after(StatusCode code, Clock::time_point now, double uniform) const;
  std::optional<Clock::duration> pause_after(StatusCode code) const {
    return pause_after(code, Clock::now(), uniform01());
  }

 private:
  RetryPolicy policy_;
  Deadline deadline_;
  int attempt_ = 0;
};

}  // namespace calsurr::detail

#endif
