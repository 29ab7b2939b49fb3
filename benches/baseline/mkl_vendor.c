/* The PyTorch baseline's copy of titan's answer to MKL's vendor check (titan/csrc/shim.cpp):
 * loaded with LD_PRELOAD, so PyTorch's MKL also picks its kernels by instruction set on AMD
 * CPUs. The train_step bench compiles it with `cc` and times PyTorch with and without it. */
int mkl_serv_intel_cpu_true(void) { return 1; }
