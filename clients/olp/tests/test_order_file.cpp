// Unit test of the BLHA2 order-file parser (order_file.cpp) with a lookup that needs no server: every line
// answered as the README says, ids from 1, the overrides and the process checks.
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "order_file.hpp"

using calsurr::olp::Contract;
using calsurr::olp::ModelInfo;

namespace {

int failures = 0;

void check(bool condition, const std::string& what) {
  if (!condition) {
    std::fprintf(stderr, "FAILED: %s\n", what.c_str());
    ++failures;
  }
}

void check_equal(const std::string& got, const std::string& expected, const std::string& what) {
  check(got == expected, what + ": got '" + got + "', expected '" + expected + "'");
}

struct FakeServers {
  std::vector<std::string> asked;  // "server model"
  std::string operator()(const std::string& server, const std::string& model, ModelInfo& info) {
    asked.push_back(server + " " + model);
    if (server == "down:1") return "UNAVAILABLE (14): connection refused";
    if (model == "gg_gg") info = {4, "gg_gg"};
    else if (model == "gg_ggg") info = {5, "gg_ggg"};
    else if (model == "odd") info = {4, "qq_qq"};
    else return "NOT_FOUND (5): unknown model '" + model + "'";
    return "";
  }
};

Contract answer(const std::string& text, FakeServers& servers, const std::string& override_server = "") {
  std::istringstream order(text);
  return calsurr::olp::answer_order_file(order, override_server, std::ref(servers));
}

void test_a_tree_order_file() {
  FakeServers servers;
  const Contract contract = answer(
      "# order file of a generator\n"
      "InterfaceVersion BLHA2\n"
      "\n"
      "AmplitudeType Tree\n"
      "CorrectionType QCD   # only matters for loops\n"
      "IRregularisation CDR\n"
      "CouplingPower QCD 2\n"
      "Extra CalsurrServer host:9000\n"
      "Extra CalsurrModel gg_gg\n"
      "21 21 -> 21 21\n"
      "  21   21 ->  21 21  \r\n"
      "Extra CalsurrModel gg_ggg\n"
      "CouplingPower QCD 3\n"
      "21 21 -> 21 21 21\n",
      servers);
  const std::vector<std::string> expected = {
      "# order file of a generator",
      "InterfaceVersion BLHA2 | OK",
      "",
      "AmplitudeType Tree | OK",
      "CorrectionType QCD | OK # only matters for loops",
      "IRregularisation CDR | OK",
      "CouplingPower QCD 2 | OK",
      "Extra CalsurrServer host:9000 | OK",
      "Extra CalsurrModel gg_gg | OK",
      "21 21 -> 21 21 | 1 1",
      "21   21 ->  21 21 | 1 2",
      "Extra CalsurrModel gg_ggg | OK",
      "CouplingPower QCD 3 | OK",
      "21 21 -> 21 21 21 | 1 3",
  };
  check(contract.ok, "a tree order file is accepted");
  check(contract.lines.size() == expected.size(), "one contract line per order-file line");
  for (std::size_t i = 0; i < expected.size() && i < contract.lines.size(); ++i)
    check_equal(contract.lines[i], expected[i], "line " + std::to_string(i + 1));
  check(contract.subprocesses.size() == 3, "three subprocesses");
  if (contract.subprocesses.size() == 3) {
    check(contract.subprocesses[2].id == 3 && contract.subprocesses[2].n_legs == 5, "id 3 has 5 legs");
    check_equal(contract.subprocesses[2].server, "host:9000", "Extra CalsurrServer applies after it");
    check_equal(contract.subprocesses[2].model, "gg_ggg", "the latest Extra CalsurrModel applies");
  }
}

void test_unsupported_is_an_error() {
  FakeServers servers;
  const Contract contract = answer(
      "InterfaceVersion BLHA1\n"
      "AmplitudeType Loop\n"
      "Extra CalsurrModel gg_gg\n"
      "21 21 -> 21 21\n"
      "AmplitudeType ccTree\n"
      "AmplitudeType scTree\n"
      "CorrectionType EW\n"
      "CouplingPower QED 1\n"
      "OperationMode Loopy\n"
      "Extra NJetSymmetrizeFinal yes\n"
      "SomethingNew 1\n",
      servers);
  check(!contract.ok, "an order file with unsupported lines fails");
  const std::vector<std::string> expected = {
      "InterfaceVersion BLHA1 | Error: unsupported",
      "AmplitudeType Loop | Error: unsupported",
      "Extra CalsurrModel gg_gg | OK",
      "21 21 -> 21 21 | Error: unsupported AmplitudeType Loop",
      "AmplitudeType ccTree | Error: unsupported",
      "AmplitudeType scTree | Error: unsupported",
      "CorrectionType EW | Error: unsupported",
      "CouplingPower QED 1 | Error: unsupported",
      "OperationMode Loopy | Error: unsupported",
      "Extra NJetSymmetrizeFinal yes | Error: unsupported",
      "SomethingNew 1 | Error: unsupported",
  };
  for (std::size_t i = 0; i < expected.size() && i < contract.lines.size(); ++i)
    check_equal(contract.lines[i], expected[i], "unsupported line " + std::to_string(i + 1));
  check(contract.subprocesses.empty(), "no subprocess under Loop");
  check(servers.asked.empty(), "no server asked for a process that cannot be served");
}

void test_process_checks() {
  FakeServers servers;
  const Contract contract = answer(
      "AmplitudeType Tree\n"
      "21 21 -> 21 21\n"  // no model yet
      "Extra CalsurrModel gg_gg\n"
      "21 21 -> 21 21 21\n"  // 5 legs, the model takes 4
      "1 -1 -> 21 21\n"      // quarks
      "21 21 -> g g\n"       // not PDG codes
      "Extra CalsurrModel nope\n"
      "21 21 -> 21 21\n"  // unknown model
      "Extra CalsurrModel odd\n"
      "21 21 -> 21 21\n"  // a card process we cannot map
      "Extra CalsurrModel gg_gg\n"
      "CouplingPower QCD 3\n"
      "21 21 -> 21 21\n"  // wrong power
      "CouplingPower QCD 2\n"
      "Extra CalsurrServer down:1\n"
      "21 21 -> 21 21\n",  // server down
      servers);
  check(!contract.ok, "bad processes fail");
  const std::vector<std::string> answers = {
      "AmplitudeType Tree | OK",
      "21 21 -> 21 21 | Error: no Extra CalsurrModel before the process",
      "Extra CalsurrModel gg_gg | OK",
      "21 21 -> 21 21 21 | Error: the process has 5 legs, model gg_gg (process gg_gg, 4 particles)",
      "1 -1 -> 21 21 | Error: the process is not 21 21 -> 21 21 of model gg_gg (process gg_gg, 4 particles)",
      "21 21 -> g g | Error: a process is PDG codes, e.g. 21 21 -> 21 21",
      "Extra CalsurrModel nope | OK",
      "21 21 -> 21 21 | Error: NOT_FOUND (5): unknown model 'nope'",
      "Extra CalsurrModel odd | OK",
      "21 21 -> 21 21 | Error: cannot map the process of model odd (process qq_qq, 4 particles) to PDG codes",
      "Extra CalsurrModel gg_gg | OK",
      "CouplingPower QCD 3 | OK",
      "21 21 -> 21 21 | Error: CouplingPower QCD 3, a tree of 4 gluons has 2",
      "CouplingPower QCD 2 | OK",
      "Extra CalsurrServer down:1 | OK",
      "21 21 -> 21 21 | Error: UNAVAILABLE (14): connection refused",
  };
  for (std::size_t i = 0; i < answers.size() && i < contract.lines.size(); ++i)
    check_equal(contract.lines[i], answers[i], "process line " + std::to_string(i + 1));
  check(contract.subprocesses.empty(), "no id for a refused process");
}

void test_server_override_and_default() {
  FakeServers servers;
  Contract contract = answer("AmplitudeType Tree\nExtra CalsurrServer a:1\nExtra CalsurrModel gg_gg\n21 21 -> 21 21\n",
                             servers, "b:2");
  check(contract.ok && contract.subprocesses.size() == 1, "override accepted");
  if (!contract.subprocesses.empty()) check_equal(contract.subprocesses[0].server, "b:2", "CALSURR_SERVER wins");
  contract = answer("AmplitudeType Tree\nExtra CalsurrModel gg_gg\n21 21 -> 21 21\n", servers);
  if (!contract.subprocesses.empty())
    check_equal(contract.subprocesses[0].server, calsurr::olp::DEFAULT_SERVER, "the default server");
}

void test_a_contract_read_again_and_options() {
  FakeServers servers;
  const Contract contract = answer(
      "AmplitudeType Tree | OK\n"
      "OperationMode CouplingsStrippedOff\n"
      "Extra CalsurrModel gg_gg | OK\n"
      "21 21 -> 21 21 | 1 7\n",
      servers);
  check(contract.ok && contract.couplings_stripped, "a contract read back, couplings stripped");
  if (contract.lines.size() == 4) check_equal(contract.lines[3], "21 21 -> 21 21 | 1 1", "answered afresh");
}

void test_card_helpers() {
  using calsurr::olp::json_string_field;
  using calsurr::olp::process_pdg_codes;
  const std::string card =
      R"({"schema_version": 1, "name": "gg_gg", "domain": {"process": "nested", "list": [1, {"a": "b"}]},)"
      R"( "description": "a \"quoted\" process", "process": "gg_\u0067g", "x": null})";
  const auto process = json_string_field(card, "process");
  check(process && *process == "gg_gg", "the top-level process, not the nested one");
  check(!json_string_field(card, "missing"), "a missing key");
  check(!json_string_field("not json", "process"), "not JSON");
  const auto codes = process_pdg_codes("gg_ggg");
  check(codes && codes->first == std::vector<int>{21, 21} && codes->second == std::vector<int>{21, 21, 21}, "gg_ggg");
  check(!process_pdg_codes("qq_qq") && !process_pdg_codes("gggg") && !process_pdg_codes("_gg"), "unmappable");
}

}  // namespace

int main() {
  test_a_tree_order_file();
  test_unsupported_is_an_error();
  test_process_checks();
  test_server_override_and_default();
  test_a_contract_read_again_and_options();
  test_card_helpers();
  if (failures) std::fprintf(stderr, "%d check(s) failed\n", failures);
  else std::printf("test_order_file: all checks passed\n");
  return failures ? 1 : 0;
}
