// Deadlines on the steady clock: one per call, shared by all its requests and retries.
#ifndef CALSURR_SRC_DEADLINE_HPP
#define CALSURR_SRC_DEADLINE_HPP

#include <chrono>

namespace calsurr::detail {

using Clock = std::chrono::steady_clock;

/// A point on the steady clock, or none (time_point::max()).
struct Deadline {
  Clock::time_point at = Clock::time_point::max();

  static Deadline none() { return {}; }
  /// `seconds` from now; 0 (or less): none.
  static Deadline after(double seconds) {
    if (!(seconds > 0)) return none();
    // Beyond ~290 years the nanosecond count overflows: such a deadline is none.
    if (seconds > 1e9) return none();
    return {Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds))};
  }
  bool is_none() const { return at == Clock::time_point::max(); }
  bool passed(Clock::time_point now = Clock::now()) const { return !is_none() && now >= at; }
  /// Seconds left (may be negative); a large number for none.
  double remaining_seconds(Clock::time_point now = Clock::now()) const {
    if (is_none()) return 1e18;
    return std::chrono::duration<double>(at - now).count();
  }
  /// The later of the two (none if either is none): a merged request serves every caller's deadline.
  static Deadline later(Deadline a, Deadline b) { return a.at > b.at ? a : b; }
};

}  // namespace calsurr::detail

#endif
