#include "retry.hpp"

#include <cmath>
#include <random>
#include <sstream>

namespace calsurr {

double RetryPolicy::backoff(int retry, double uniform) const {
  const double base =
      std::min(max_backoff_seconds, initial_backoff_seconds * std::pow(multiplier, std::max(0, retry - 1)));
  return base * (1 + jitter * (2 * uniform - 1));
}

double RetryPolicy::backoff(int retry) const { return backoff(retry, detail::uniform01()); }

void RetryPolicy::validate() const {
  std::ostringstream got;
  got << "max_attempts=" << max_attempts << ", initial_backoff_seconds=" << initial_backoff_seconds
      << ", max_backoff_seconds=" << max_backoff_seconds << ", multiplier=" << multiplier << ", jitter=" << jitter;
  if (max_attempts < 1 || !(initial_backoff_seconds >= 0) || !(max_backoff_seconds >= initial_backoff_seconds)) {
    throw Error(StatusCode::INVALID_ARGUMENT,
                "retry policy needs max_attempts >= 1 and 0 <= initial <= max backoff, got " + got.str());
  }
  if (!(multiplier >= 1) || !(jitter >= 0 && jitter < 1)) {
    throw Error(StatusCode::INVALID_ARGUMENT,
                "retry policy needs multiplier >= 1 and 0 <= jitter < 1, got " + got.str());
  }
}

namespace detail {

double uniform01() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(generator);
}

std::optional<Clock::duration> Attempts::pause_after(StatusCode code, Clock::time_point now, double uniform) const {
  if (!retryable(code) || attempt_ >= policy_.max_attempts) return std::nullopt;
  const auto pause = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(policy_.backoff(attempt_, uniform)));
  if (!deadline_.is_none() && now + pause >= deadline_.at) return std::nullopt;
  return pause;
}

}  // namespace detail
}  // namespace calsurr
