"""Install minillm: `pip install -e ".[test]"`.

The core needs numpy, tokenizers, safetensors, tqdm and threadpoolctl (BLAS thread control).
Everything else is an extra.
"""
from setuptools import find_packages, setup

EXTRAS = {
    "test": ["pytest>=7", "hypothesis>=6", "pytest-timeout>=2", "jupytext>=1.14",
             # NVRTC, the compiler CuPy uses, so CI compiles kernels/*.cu as a GPU run will (no GPU needed)
             "nvidia-cuda-nvrtc-cu12; platform_system == 'Linux'"],
    "gpu": ["cupy-cuda12x"],
    "plots": ["matplotlib>=3.5"],
    "metrics": ["nltk>=3.8"],
    "distributed": ["mpi4py>=3.1", "mpich"],  # mpiexec -n N minillm finetune ... (minillm/distributed/)
    "parquet": ["pyarrow>=12"],  # --data train.parquet (minillm/data/parquet.py)
    "dev": ["mutmut>=3,<4"],  # tools/mutation.sh: do the tests notice a changed line? (docs/testing.md)
    "parity": [
        "torch==2.13.0",
        "transformers>=4.40",
        "peft>=0.10",
        "rouge-score>=0.1.2",
        "sacrebleu>=2.3",
        "nltk>=3.8",
        "scipy>=1.9",  # oracle for the correlation/Matthews tests (and the exact erf of gelu)
    ],
}
EXTRAS["all"] = sorted({dep for deps in EXTRAS.values() for dep in deps if "cupy" not in dep})

setup(
    name="minillm",
    version="0.1.0",
    description="A from-scratch deep-learning framework that teaches how LLMs (T5) are built, "
    "fine-tuned and evaluated.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["minillm", "minillm.*"]),
    install_requires=["numpy>=1.23", "tokenizers>=0.15", "safetensors>=0.4", "tqdm>=4.60",
                      "threadpoolctl>=3.1"],
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["minillm=minillm.cli.main:main"]},
)
