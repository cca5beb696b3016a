// The C API's contract without a server: defaults, NULL and invalid arguments, the thread-local message, and a
// server that is not there (UNAVAILABLE after the retries, in bounded time, naming the address).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "calsurr/calsurr.h"
#include "unit.hpp"

namespace {

bool contains(const char* text, const char* part) { return std::string(text).find(part) != std::string::npos; }

// A loopback port nothing listens on: bound once to get a free one, then closed.
int closed_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t size = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &size);
  const int port = ntohs(address.sin_port);
  close(fd);
  return port;
}

calsurr_client* connected(const calsurr_options* options = nullptr) {
  calsurr_client* client = nullptr;
  const std::string address = "127.0.0.1:" + std::to_string(closed_port());
  const int status = calsurr_connect(address.c_str(), options, &client);
  CHECK_EQ(status, int{CALSURR_OK});
  return client;
}

}  // namespace

TEST(c_options_init_fills_the_documented_defaults) {
  calsurr_options options;
  calsurr_options_init(&options);
  CHECK_EQ(options.timeout_seconds, 30.0);
  CHECK_EQ(options.max_attempts, 5);
  CHECK_EQ(options.initial_backoff_seconds, 0.1);
  CHECK_EQ(options.max_backoff_seconds, 5.0);
  CHECK_EQ(options.chunk_rows, int64_t{0});
  CHECK_EQ(options.max_in_flight, 4);
  CHECK_EQ(options.coalesce_window_us, 100.0);
  CHECK_EQ(options.coalesce_max_rows, int64_t{64});
  CHECK(options.root_certificates_pem == nullptr && options.client_certificate_pem == nullptr);
  CHECK(options.client_key_pem == nullptr && options.bearer_token == nullptr);
  calsurr_options_init(nullptr);  // no crash
}

TEST(c_connect_refuses_null_and_bad_options) {
  calsurr_client* client = reinterpret_cast<calsurr_client*>(0x1);
  CHECK_EQ(calsurr_connect("127.0.0.1:1", nullptr, nullptr), int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "client"));
  CHECK_EQ(calsurr_connect(nullptr, nullptr, &client), int{CALSURR_INVALID_ARGUMENT});
  CHECK(client == nullptr);
  CHECK(contains(calsurr_last_error(), "address is NULL"));
  CHECK_EQ(calsurr_connect("", nullptr, &client), int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "address"));

  calsurr_options options;
  calsurr_options_init(&options);
  options.max_attempts = 0;
  CHECK_EQ(calsurr_connect("127.0.0.1:1", &options, &client), int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "max_attempts"));
  CHECK(client == nullptr);

  calsurr_options zeroed{};  // forgot calsurr_options_init
  CHECK_EQ(calsurr_connect("127.0.0.1:1", &zeroed, &client), int{CALSURR_INVALID_ARGUMENT});

  calsurr_options_init(&options);
  options.max_in_flight = -3;
  CHECK_EQ(calsurr_connect("127.0.0.1:1", &options, &client), int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "max_in_flight"));

  calsurr_options_init(&options);
  options.client_certificate_pem = "-----BEGIN CERTIFICATE-----";
  CHECK_EQ(calsurr_connect("127.0.0.1:1", &options, &client), int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "root_certificates_pem"));
  options.root_certificates_pem = "-----BEGIN CERTIFICATE-----";
  CHECK_EQ(calsurr_connect("127.0.0.1:1", &options, &client), int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "client_key_pem"));
}

TEST(c_connect_is_lazy_and_clears_the_message) {
  calsurr_connect(nullptr, nullptr, nullptr);
  CHECK(std::string(calsurr_last_error()) != "");
  calsurr_client* client = connected();
  CHECK(client != nullptr);
  CHECK_EQ(std::string(calsurr_last_error()), std::string(""));
  calsurr_close(client);
  calsurr_close(nullptr);
}

TEST(c_tls_and_token_options_connect) {
  calsurr_options options;
  calsurr_options_init(&options);
  options.root_certificates_pem = "";  // TLS with the system's roots
  options.bearer_token = "secret";
  calsurr_client* client = connected(&options);
  CHECK(client != nullptr);
  calsurr_close(client);
}

TEST(c_predict_refuses_bad_arguments_before_sending) {
  calsurr_client* client = connected();
  double momenta[16] = {0}, mean[1];
  const auto start = std::chrono::steady_clock::now();
  CHECK_EQ(calsurr_predict(nullptr, "gg_gg", momenta, 1, 4, mean, nullptr, nullptr, nullptr),
           int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "client is NULL"));
  CHECK_EQ(calsurr_predict(client, nullptr, momenta, 1, 4, mean, nullptr, nullptr, nullptr),
           int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "model is NULL"));
  CHECK_EQ(calsurr_predict(client, "gg_gg", nullptr, 1, 4, mean, nullptr, nullptr, nullptr),
           int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "momenta is NULL"));
  CHECK_EQ(calsurr_predict(client, "gg_gg", momenta, -1, 4, mean, nullptr, nullptr, nullptr),
           int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "n_events"));
  CHECK_EQ(calsurr_predict(client, "gg_gg", momenta, 1, 0, mean, nullptr, nullptr, nullptr),
           int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "n_particles"));
  CHECK_EQ(calsurr_predict(client, "", momenta, 1, 4, mean, nullptr, nullptr, nullptr),
           int{CALSURR_INVALID_ARGUMENT});
  CHECK(contains(calsurr_last_error(), "model"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::milliseconds(500));  // nothing was dialled

  char card[8];
  size_t needed = 0;
  CHECK_EQ(calsurr_card_json(client, "gg_gg", nullptr, 8, &needed), int{CALSURR_INVALID_ARGUMENT});
  CHECK_EQ(calsurr_card_json(nullptr, "gg_gg", card, 8, &needed), int{CALSURR_INVALID_ARGUMENT});
  CHECK_EQ(calsurr_card_json(client, nullptr, card, 8, &needed), int{CALSURR_INVALID_ARGUMENT});
  int n = 0;
  CHECK_EQ(calsurr_model_particles(client, "gg_gg", nullptr), int{CALSURR_INVALID_ARGUMENT});
  CHECK_EQ(calsurr_model_particles(nullptr, "gg_gg", &n), int{CALSURR_INVALID_ARGUMENT});
  calsurr_close(client);
}

TEST(c_last_error_is_per_thread) {
  CHECK_EQ(calsurr_connect(nullptr, nullptr, nullptr), int{CALSURR_INVALID_ARGUMENT});
  const std::string mine = calsurr_last_error();
  std::string theirs_before, theirs_after;
  std::thread other([&] {
    theirs_before = calsurr_last_error();  // a fresh thread has no message
    calsurr_predict(nullptr, "m", nullptr, 0, 4, nullptr, nullptr, nullptr, nullptr);
    theirs_after = calsurr_last_error();
  });
  other.join();
  CHECK_EQ(theirs_before, std::string(""));
  CHECK(contains(theirs_after.c_str(), "calsurr_predict"));
  CHECK_EQ(std::string(calsurr_last_error()), mine);  // untouched by the other thread
  CHECK(mine != theirs_after);
}

TEST(c_server_down_is_unavailable_after_retries_in_bounded_time) {
  calsurr_options options;
  calsurr_options_init(&options);
  options.max_attempts = 3;
  options.initial_backoff_seconds = 0.05;
  calsurr_client* client = connected(&options);
  double momenta[16] = {0}, mean[1];
  const auto start = std::chrono::steady_clock::now();
  const int status = calsurr_predict(client, "gg_gg", momenta, 1, 4, mean, nullptr, nullptr, nullptr);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK_EQ(status, int{CALSURR_UNAVAILABLE});
  CHECK(contains(calsurr_last_error(), "127.0.0.1:"));
  CHECK(contains(calsurr_last_error(), "3 attempts"));
  CHECK(seconds >= 0.05 * 0.8 + 0.1 * 0.8 && seconds < 10);  // two waits, then it gave up
  int n = 0;
  CHECK_EQ(calsurr_model_particles(client, "gg_gg", &n), int{CALSURR_UNAVAILABLE});
  char card[4];
  CHECK_EQ(calsurr_card_json(client, "gg_gg", card, sizeof card, nullptr), int{CALSURR_UNAVAILABLE});
  calsurr_close(client);
}

TEST(c_deadline_bounds_the_retries) {
  calsurr_options options;
  calsurr_options_init(&options);
  options.timeout_seconds = 0.3;  // the 5 attempts would take about 1.5 s
  calsurr_client* client = connected(&options);
  double momenta[16] = {0}, mean[1];
  const auto start = std::chrono::steady_clock::now();
  const int status = calsurr_predict(client, "gg_gg", momenta, 1, 4, mean, nullptr, nullptr, nullptr);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(status == CALSURR_UNAVAILABLE || status == CALSURR_DEADLINE_EXCEEDED);
  CHECK(seconds < 0.6);
  CHECK(contains(calsurr_last_error(), "timeout 0.3 s"));
  calsurr_close(client);
}
