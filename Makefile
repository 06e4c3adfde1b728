# Developer shortcut: compile the Cython modules in place, next to their .pyx files, after
# changing one (what "pip install -e ." does too). Needs Cython: pip install -r requirements-test.txt
PYTHON ?= python3

.PHONY: build clean

build:
	$(PYTHON) setup.py build_ext --inplace -q

clean:
	rm -rf build stressgrid/_core/*.c stressgrid/_core/*.so stressgrid/_core/*.html
