#include "unit.hpp"

int main(int argc, char** argv) { return unit::main(argc, argv); }
