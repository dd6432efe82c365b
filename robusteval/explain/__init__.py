"""The explain stage: attribution maps for the images a shift made a model get wrong.

``robusteval explain`` picks images from a scored run (:mod:`.select`: flipped, wrong or random,
the same images for every model), regenerates each shifted image exactly (:mod:`.regen`: from the
tree on disk or on the fly from its seed), runs each model's own preprocessing, computes maps for
the true and the predicted class with the registered methods (:mod:`.methods`: pytorch-grad-cam and
captum; the CAM target layer is data on the model card, :mod:`.layers`), scores each map's
faithfulness with a deletion curve (:mod:`.faithfulness`) and writes one PNG grid per model and set
(:mod:`.grid`) plus one :class:`~robusteval.explain.records.ExplainRecord` per image and method
(:mod:`.stage`, ``runs/<NAME>/explain.jsonl``).
"""
