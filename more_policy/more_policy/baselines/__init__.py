"""Non-VLA policies and the measurements that show what the sim tasks demand (Table I).

views: what the camera sees of each scene object (image-space features) and observability;
oracle: a single-frame perception oracle; blind: the best instruction-only open-loop schedule;
cnn: a CNN trained by behaviour cloning on the expert data (the paper's CLIP / VC-1 rows).
They plug into :func:`more_policy.sim.evaluate.evaluate` like the expert does.
"""
