"""Float64 references for linear time-invariant state space models: discretisation, recurrence,
convolution kernels, HiPPO-LegS and its NPLR/DPLR forms, S4D and S4 kernels."""

from .discretize import discretize
from .grad import lti_kernel_vjp, lti_vjp, s4_krylov_vjp, s4d_vjp
from .hippo import dplr_from_legs, hippo_legs, hippo_legs_nplr
from .lti import causal_conv, fft_conv, lti_kernel, lti_recurrent
from .s4 import s4_dplr_kernel, s4_krylov_kernel
from .s4d import s4d_init_inv, s4d_init_lin, s4d_kernel

__all__ = [
    "causal_conv",
    "discretize",
    "dplr_from_legs",
    "fft_conv",
    "hippo_legs",
    "hippo_legs_nplr",
    "lti_kernel",
    "lti_kernel_vjp",
    "lti_recurrent",
    "lti_vjp",
    "s4_dplr_kernel",
    "s4_krylov_kernel",
    "s4_krylov_vjp",
    "s4d_init_inv",
    "s4d_init_lin",
    "s4d_kernel",
    "s4d_vjp",
]
