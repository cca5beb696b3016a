// calsurr::Client without a server: what it refuses before dialling, and a server that is not there.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>

#include "calsurr/client.hpp"
#include "unit.hpp"

using calsurr::Client;
using calsurr::ClientOptions;
using calsurr::Error;
using calsurr::StatusCode;

namespace {

std::string nowhere() {  // a loopback address nothing listens on
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t size = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  close(fd);
  return "127.0.0.1:" + std::to_string(ntohs(address.sin_port));
}

template <class Call>
Error caught(Call call) {
  try {
    call();
  } catch (const Error& error) {
    return error;
  }
  return Error(StatusCode::OK, "nothing thrown");
}

ClientOptions quick() {
  ClientOptions options;
  options.retry.max_attempts = 3;
  options.retry.initial_backoff_seconds = 0.02;
  return options;
}

}  // namespace

TEST(cpp_client_refuses_an_empty_address_and_bad_options) {
  CHECK(caught([] { Client client(""); }).code() == StatusCode::INVALID_ARGUMENT);
  ClientOptions options;
  options.retry.jitter = 2;
  const Error error = caught([&] { Client client("127.0.0.1:1", options); });
  CHECK(error.code() == StatusCode::INVALID_ARGUMENT);
  CHECK(error.message().find("jitter") != std::string::npos);
  auto client = Client::create("127.0.0.1:1");
  CHECK(client != nullptr && client->address() == "127.0.0.1:1");
  CHECK_EQ(client->options().max_in_flight, 4);
  CHECK_EQ(client->options().coalesce_window_us, 100.0);
  CHECK_EQ(client->options().coalesce_max_rows, int64_t{64});
  CHECK_EQ(client->options().timeout_seconds, 30.0);
}

TEST(cpp_predict_refuses_bad_arguments_without_dialling) {
  Client client(nowhere(), quick());
  const double momenta[16] = {0};
  const auto start = std::chrono::steady_clock::now();
  CHECK(caught([&] { client.predict("gg_gg", momenta, 1, 0); }).message().find("n_particles") != std::string::npos);
  CHECK(caught([&] { client.predict("gg_gg", momenta, -2, 4); }).message().find("n_events") != std::string::npos);
  CHECK(caught([&] { client.predict("gg_gg", nullptr, 3, 4); }).message().find("momenta is NULL") != std::string::npos);
  CHECK(caught([&] { client.predict("", momenta, 1, 4); }).message().find("model") != std::string::npos);
  const Error size = caught([&] { client.predict("gg_gg", std::vector<double>(17, 0.0), 4); });
  CHECK(size.code() == StatusCode::INVALID_ARGUMENT);
  CHECK(size.message().find("17 doubles") != std::string::npos);
  CHECK(caught([&] { client.predict_async("gg_gg", momenta, 1, 4, nullptr); }).code() == StatusCode::INVALID_ARGUMENT);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(200));
  CHECK_EQ(client.stats().infer_requests, uint64_t{0});
}

TEST(cpp_server_down_is_unavailable_after_the_retries) {
  Client client(nowhere(), quick());
  const double momenta[16] = {0};
  const Error error = caught([&] { client.predict("gg_gg", momenta, 1, 4); });
  CHECK(error.code() == StatusCode::UNAVAILABLE);
  CHECK(error.message().find("ModelMetadata to 127.0.0.1:") != std::string::npos);
  CHECK(error.message().find("3 attempts") != std::string::npos);
  CHECK_EQ(client.stats().retries, uint64_t{2});
  CHECK(caught([&] { client.card_json("gg_gg"); }).code() == StatusCode::UNAVAILABLE);
  CHECK(caught([&] { client.is_live(); }).code() == StatusCode::UNAVAILABLE);
}

TEST(cpp_future_carries_the_error) {
  ClientOptions options = quick();
  options.retry.max_attempts = 1;
  Client client(nowhere(), options);
  auto future = client.predict_async("gg_gg", std::vector<double>(32, 1.0), 4);
  const Error error = caught([&] { future.get(); });
  CHECK(error.code() == StatusCode::UNAVAILABLE);
  auto refused = client.predict_async("gg_gg", std::vector<double>(5, 1.0), 4);
  CHECK(caught([&] { refused.get(); }).code() == StatusCode::INVALID_ARGUMENT);
}
