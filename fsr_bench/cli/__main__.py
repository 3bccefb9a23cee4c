from fsr_bench.cli import main

main()
