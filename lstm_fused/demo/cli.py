"""python -m lstm_fused.demo: one subcommand per demo."""
import argparse
import importlib

# name -> (module of this package with add_arguments(parser) and run(args), summary)
DEMOS = {
    "adding": ("adding", "the adding problem: standard LSTM cell against its variants"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_fused.demo",
                                     description="Training demos of lstm_fused.LSTM.")
    sub = parser.add_subparsers(dest="demo", metavar="DEMO", required=True)
    modules = {}
    for name, (module, summary) in DEMOS.items():
        modules[name] = importlib.import_module(f".{module}", __package__)
        p = sub.add_parser(name, help=summary, description=modules[name].__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        modules[name].add_arguments(p)
    args = parser.parse_args(argv)
    return modules[args.demo].run(args) or 0
