"""PAS face pose editing (Pixel Attention Sampling + inpainting; "Pose editing by pixel attention sampling",
2021): networks, losses, the ``pas`` training method and inference. Preprocessing (Sec. 3.1) lives in
:mod:`gan_bridge.face.pas_prep`."""
