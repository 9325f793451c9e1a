# transform.py template.cu out.h - strip the inline-PTX helpers (emu.h provides them) and
# replace the few other PTX bits, leaving every line of kernel logic as written.
import re, sys
src = open(sys.argv[1]).read()
helpers = ["attn_exp2", "attn_smem_addr", "attn_cp_async16", "attn_cp_async4", "attn_cp_async_commit",
           "attn_cp_async_wait_all", "attn_cp_async_wait_one", "attn_ldsm_x4", "attn_ldsm_x4_trans", "attn_mma", "attn_pack"]
for h in helpers:
    m = re.search(r"__device__ __forceinline__ [\w ]+?\b" + h + r"\(", src)
    if not m:
        continue
    i = src.index("{", m.end())
    depth = 0
    j = i
    while True:
        if src[j] == "{": depth += 1
        elif src[j] == "}":
            depth -= 1
            if depth == 0: break
        j += 1
    src = src[:m.start()] + "/* " + h + ": emulated */" + src[j + 1:]
# the helpers that moved to kernels/mma_sm80.cuh: emu.h supplies them all
src = src.replace('#include "mma_sm80.cuh"', "/* mma_sm80.cuh: emulated */")
src = src.replace("extern __shared__ __align__(16) unsigned char attn_smem[];", "unsigned char *attn_smem = emu_dyn_smem;")
src = src.replace('asm("mov.u32 %0, %%dynamic_smem_size;" : "=r"(dyn));', "dyn = emu_dyn_smem_size;")
src = src.replace('asm volatile("trap;");', "emu_trap();")
src = src.replace("(unsigned)__cvta_generic_to_shared(p)", "0")
assert "asm" not in re.sub(r"//.*", "", src), "PTX left in " + sys.argv[1]
open(sys.argv[2], "w").write(src)
