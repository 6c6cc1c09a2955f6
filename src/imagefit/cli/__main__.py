"""`python -m imagefit.cli`."""

from imagefit.cli import main

if __name__ == "__main__":
    main()
