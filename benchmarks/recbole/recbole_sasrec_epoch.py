"""RecBole 1.2.1 SASRec: seconds per training epoch (run by seqrec_vs_recbole_bench.py in a venv with recbole==1.2.1 and numpy<2).

    python recbole_sasrec_epoch.py DATASET ATOMIC_FILES_PARENT_FOLDER EPOCHS
"""
import sys, time, json, os, torch
_load = torch.load
torch.load = lambda *a, **k: _load(*a, **{**k, 'weights_only': False})
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_seed
name, folder, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
cfg = dict(data_path=folder, dataset=name, USER_ID_FIELD='user_id', ITEM_ID_FIELD='item_id', TIME_FIELD='timestamp',
           load_col={'inter': ['user_id', 'item_id', 'timestamp']}, MAX_ITEM_LIST_LENGTH=200, hidden_size=64, inner_size=256,
           n_layers=2, n_heads=2, hidden_dropout_prob=0.2, attn_dropout_prob=0.2, loss_type='CE', train_batch_size=128,
           learning_rate=1e-3, epochs=epochs, eval_step=1000, train_neg_sample_args=None, device='cpu', use_gpu=False,
           eval_args={'split': {'LS': 'valid_and_test'}, 'order': 'TO', 'mode': 'full'}, show_progress=False, seed=42,
           checkpoint_dir='/tmp/rb_ckpt', log_wandb=False, worker=0)
config = Config(model='SASRec', config_dict=cfg); init_seed(42, True)
ds = create_dataset(config); train, valid, test = data_preparation(config, ds)
model = SASRec(config, train.dataset).to('cpu'); tr = Trainer(config, model)
times = []
for ep in range(epochs):
    t = time.perf_counter(); loss = tr._train_epoch(train, ep, show_progress=False); times.append(time.perf_counter() - t)
    print(json.dumps({'epoch': ep, 'seconds': times[-1], 'loss': float(loss) if not isinstance(loss, tuple) else float(sum(loss))}), flush=True)
print(json.dumps({'recbole_epoch_seconds': times, 'n_train_sequences': len(train.dataset), 'threads': torch.get_num_threads()}))
