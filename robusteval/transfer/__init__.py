"""Stage 4, transfer: few-shot linear probing, ILM-VP visual prompting, fine-tuning and freezing.

``run_transfer(TransferRequest(...))`` writes one :class:`TransferRecord` line per finished
(model, dataset, method, shots, seed) cell to ``runs/<NAME>/transfer.jsonl``. Datasets are data
(:data:`datasets.DATASETS`), methods are cards (:data:`protocol.CARDS`) plus registered trainers.
"""
