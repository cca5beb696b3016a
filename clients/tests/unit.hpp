// A tiny test runner: TEST(name) { CHECK(...); CHECK_EQ(a, b); }, one ctest test per TEST (the program runs
// the one named on its command line, or all of them).
#ifndef CALSURR_TESTS_UNIT_HPP
#define CALSURR_TESTS_UNIT_HPP

#include <cstdio>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace unit {

struct Case {
  const char* name;
  std::function<void()> body;
};

inline std::vector<Case>& cases() {
  static std::vector<Case> all;
  return all;
}

inline int& failures() {
  static int count = 0;
  return count;
}

struct Register {
  Register(const char* name, std::function<void()> body) { cases().push_back({name, std::move(body)}); }
};

inline void fail(const char* file, int line, const std::string& what) {
  ++failures();
  std::fprintf(stderr, "%s:%d: FAILED %s\n", file, line, what.c_str());
}

template <class A, class B>
void check_eq(const A& a, const B& b, const char* a_text, const char* b_text, const char* file, int line) {
  if (a == b) return;
  std::ostringstream what;
  what << a_text << " == " << b_text << " (" << a << " vs " << b << ")";
  fail(file, line, what.str());
}

inline int main(int argc, char** argv) {
  // --listed NAME...: fails when a test is missing from the list (tests/CMakeLists.txt names each one for ctest).
  if (argc > 1 && std::strcmp(argv[1], "--listed") == 0) {
    int missing = 0;
    for (const Case& c : cases()) {
      bool found = false;
      for (int i = 2; i < argc; ++i) found = found || std::strcmp(argv[i], c.name) == 0;
      if (!found) {
        std::fprintf(stderr, "test %s is not listed in tests/CMakeLists.txt, so ctest never runs it\n", c.name);
        ++missing;
      }
    }
    return missing == 0 ? 0 : 1;
  }
  int ran = 0;
  for (const Case& c : cases()) {
    if (argc > 1 && std::strcmp(argv[1], c.name) != 0) continue;
    const int before = failures();
    try {
      c.body();
    } catch (const std::exception& error) {
      fail(__FILE__, __LINE__, std::string(c.name) + " threw " + error.what());
    }
    std::printf("%s %s\n", failures() == before ? "ok" : "FAILED", c.name);
    ++ran;
  }
  if (ran == 0) {
    std::fprintf(stderr, "no test named %s\n", argc > 1 ? argv[1] : "(any)");
    return 2;
  }
  return failures() == 0 ? 0 : 1;
}

}  // namespace unit

#define UNIT_CONCAT2(a, b) a##b
#define UNIT_CONCAT(a, b) UNIT_CONCAT2(a, b)
#define TEST(name)                                                         \
  static void name();                                                      \
  static ::unit::Register UNIT_CONCAT(register_, name)(#name, &name);      \
  static void name()
#define CHECK(condition) \
  ((condition) ? (void)0 : ::unit::fail(__FILE__, __LINE__, "CHECK(" #condition ")"))
#define CHECK_EQ(a, b) ::unit::check_eq((a), (b), #a, #b, __FILE__, __LINE__)

#endif
