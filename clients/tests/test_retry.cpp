// The retry schedule is the Python client's RetryPolicy (service/client.py): the same waits and jitter.
#include <algorithm>
#include <cmath>

#include "retry.hpp"
#include "unit.hpp"

using calsurr::Error;
using calsurr::RetryPolicy;
using calsurr::StatusCode;
using calsurr::detail::Attempts;
using calsurr::detail::Clock;
using calsurr::detail::Deadline;

TEST(retry_defaults_match_the_python_client) {
  const RetryPolicy policy;
  CHECK_EQ(policy.max_attempts, 5);
  CHECK_EQ(policy.initial_backoff_seconds, 0.1);
  CHECK_EQ(policy.max_backoff_seconds, 5.0);
  CHECK_EQ(policy.multiplier, 2.0);
  CHECK_EQ(policy.jitter, 0.2);
}

TEST(retry_schedule_doubles_to_the_cap) {
  const RetryPolicy policy;
  const double expected[] = {0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0};
  for (int retry = 1; retry <= 9; ++retry) CHECK_EQ(policy.backoff(retry, 0.5), expected[retry - 1]);
}

TEST(retry_jitter_spreads_each_wait_by_twenty_percent) {
  const RetryPolicy policy;
  for (int retry = 1; retry <= 8; ++retry) {
    const double base = policy.backoff(retry, 0.5);
    CHECK(std::abs(policy.backoff(retry, 0.0) - 0.8 * base) < 1e-12);
    CHECK(std::abs(policy.backoff(retry, std::nextafter(1.0, 0.0)) - 1.2 * base) < 1e-12);
    double low = 1e9, high = 0, sum = 0;
    const int draws = 20000;
    for (int i = 0; i < draws; ++i) {
      const double wait = policy.backoff(retry);
      low = std::min(low, wait);
      high = std::max(high, wait);
      sum += wait;
    }
    CHECK(low >= 0.8 * base && high <= 1.2 * base);
    CHECK(low < 0.81 * base && high > 1.19 * base);  // the whole range is used
    CHECK(std::abs(sum / draws - base) < 0.01 * base);  // centred on the base
  }
}

TEST(retry_attempts_give_up_after_max_attempts) {
  Attempts attempts(RetryPolicy{}, Deadline::none());
  const auto now = Clock::now();
  for (int attempt = 1; attempt <= 4; ++attempt) {
    attempts.begin();
    const auto pause = attempts.pause_after(StatusCode::UNAVAILABLE, now, 0.5);
    CHECK(pause.has_value());
    if (pause) CHECK(std::abs(std::chrono::duration<double>(*pause).count() - 0.1 * std::pow(2, attempt - 1)) < 1e-9);
  }
  attempts.begin();
  CHECK(!attempts.pause_after(StatusCode::UNAVAILABLE, now, 0.5).has_value());
}

TEST(retry_only_unavailable) {
  Attempts attempts(RetryPolicy{}, Deadline::none());
  attempts.begin();
  for (auto code : {StatusCode::INVALID_ARGUMENT, StatusCode::NOT_FOUND, StatusCode::DEADLINE_EXCEEDED,
                    StatusCode::RESOURCE_EXHAUSTED, StatusCode::INTERNAL, StatusCode::CANCELLED, StatusCode::UNKNOWN})
    CHECK(!attempts.pause_after(code, Clock::now(), 0.5).has_value());
  CHECK(attempts.pause_after(StatusCode::UNAVAILABLE, Clock::now(), 0.5).has_value());
}

TEST(retry_never_past_the_deadline) {
  const auto now = Clock::now();
  Attempts attempts(RetryPolicy{}, Deadline{now + std::chrono::milliseconds(250)});
  attempts.begin();
  CHECK(attempts.pause_after(StatusCode::UNAVAILABLE, now, 0.5).has_value());   // 0.1 s < 0.25 s
  attempts.begin();
  CHECK(attempts.pause_after(StatusCode::UNAVAILABLE, now, 0.5).has_value());   // 0.2 s < 0.25 s
  attempts.begin();
  CHECK(!attempts.pause_after(StatusCode::UNAVAILABLE, now, 0.5).has_value());  // 0.4 s would pass it
}

TEST(retry_off_with_one_attempt) {
  RetryPolicy policy;
  policy.max_attempts = 1;
  Attempts attempts(policy, Deadline::none());
  attempts.begin();
  CHECK(!attempts.pause_after(StatusCode::UNAVAILABLE, Clock::now(), 0.5).has_value());
}

TEST(retry_policy_refuses_nonsense) {
  auto refused = [](RetryPolicy policy) {
    try {
      policy.validate();
    } catch (const Error& error) {
      return error.code() == StatusCode::INVALID_ARGUMENT && error.message().find("retry policy") == 0;
    }
    return false;
  };
  RetryPolicy policy;
  policy.validate();
  policy.max_attempts = 0;
  CHECK(refused(policy));
  policy = {};
  policy.initial_backoff_seconds = 6;
  CHECK(refused(policy));
  policy = {};
  policy.jitter = 1;
  CHECK(refused(policy));
  policy = {};
  policy.multiplier = 0.5;
  CHECK(refused(policy));
}

TEST(options_refuse_nonsense_naming_the_option) {
  auto message = [](calsurr::ClientOptions options) -> std::string {
    try {
      options.validate();
    } catch (const Error& error) {
      return error.code() == StatusCode::INVALID_ARGUMENT ? error.message() : "wrong code";
    }
    return "accepted";
  };
  calsurr::ClientOptions options;
  CHECK_EQ(message(options), std::string("accepted"));
  options.max_in_flight = 0;
  CHECK(message(options).find("max_in_flight") != std::string::npos);
  options = {};
  options.timeout_seconds = -1;
  CHECK(message(options).find("timeout_seconds") != std::string::npos);
  options = {};
  options.coalesce_window_us = -5;
  CHECK(message(options).find("coalesce_window_us") != std::string::npos);
  options = {};
  options.tls.enabled = true;
  options.tls.client_certificate_pem = "x";
  CHECK(message(options).find("client_key_pem") != std::string::npos);
  options = {};
  options.bearer_token = "a\nb";
  CHECK(message(options).find("bearer_token") != std::string::npos);
}

TEST(error_carries_code_and_message) {
  const Error error(StatusCode::NOT_FOUND, "unknown model 'x'");
  CHECK_EQ(std::string(error.what()), std::string("NOT_FOUND: unknown model 'x'"));
  CHECK_EQ(error.message(), std::string("unknown model 'x'"));
  CHECK(error.code() == StatusCode::NOT_FOUND);
  CHECK_EQ(std::string(calsurr::status_name(static_cast<StatusCode>(99))), std::string("UNKNOWN"));
  CHECK_EQ(calsurr::Status().to_string(), std::string("OK"));
}
