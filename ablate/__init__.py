"""ablate: architecture ablation studies of ConvNets, one YAML study and one command."""

__version__ = "0.1.0"
