"""Architecture configs for bench/ltx2_gpu.py: the real LTX-2.0 (19B) ones and tiny ones for CPU dry runs.

REAL: diffusers' LTX-2.0 conversion presets (`get_ltx2_*_config("2.0")` in huggingface/diffusers'
ltx2 conversion code, which writes the `Lightricks/LTX-2` diffusers folders) and the Gemma-3-12B config
of `google/gemma-3-12b-it` (the LTX-2.0 text encoder: 48 layers of width 3840, hence the connectors'
`text_proj_in_factor` 49). The transformer gets `perturbed_attn=True` as scenekit loads it (STG).
TINY: the sizes of `scenekit.ltx2.tiny` (a few hundred thousand parameters in all).
"""

from __future__ import annotations

from scenekit.ltx2.tiny import tiny_configs

# --- real LTX-2.0 ---------------------------------------------------------------------------------

TRANSFORMER = dict(
    in_channels=128,
    out_channels=128,
    patch_size=1,
    patch_size_t=1,
    num_attention_heads=32,
    attention_head_dim=128,
    cross_attention_dim=4096,
    vae_scale_factors=(8, 32, 32),
    pos_embed_max_pos=20,
    base_height=2048,
    base_width=2048,
    gated_attn=False,
    cross_attn_mod=False,
    audio_in_channels=128,
    audio_out_channels=128,
    audio_patch_size=1,
    audio_patch_size_t=1,
    audio_num_attention_heads=32,
    audio_attention_head_dim=64,
    audio_cross_attention_dim=2048,
    audio_scale_factor=4,
    audio_pos_embed_max_pos=20,
    audio_sampling_rate=16000,
    audio_hop_length=160,
    audio_gated_attn=False,
    audio_cross_attn_mod=False,
    num_layers=48,
    activation_fn="gelu-approximate",
    qk_norm="rms_norm_across_heads",
    norm_elementwise_affine=False,
    norm_eps=1e-6,
    caption_channels=3840,
    attention_bias=True,
    attention_out_bias=True,
    rope_theta=10000.0,
    rope_double_precision=True,
    causal_offset=1,
    timestep_scale_multiplier=1000,
    cross_attn_timestep_scale_multiplier=1000,
    rope_type="split",
    use_prompt_embeddings=True,
    perturbed_attn=True,  # the repo config says False; scenekit loads with True (no weights, STG processor)
)

CONNECTORS = dict(
    caption_channels=3840,
    text_proj_in_factor=49,
    video_connector_num_attention_heads=30,
    video_connector_attention_head_dim=128,
    video_connector_num_layers=2,
    video_connector_num_learnable_registers=128,
    video_gated_attn=False,
    audio_connector_num_attention_heads=30,
    audio_connector_attention_head_dim=128,
    audio_connector_num_layers=2,
    audio_connector_num_learnable_registers=128,
    audio_gated_attn=False,
    connector_rope_base_seq_len=4096,
    rope_theta=10000.0,
    rope_double_precision=True,
    causal_temporal_positioning=False,
    rope_type="split",
    per_modality_projections=False,
    proj_bias=False,
)

VIDEO_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=128,
    block_out_channels=(256, 512, 1024, 2048),
    down_block_types=("LTX2VideoDownBlock3D",) * 4,
    decoder_block_out_channels=(256, 512, 1024),
    layers_per_block=(4, 6, 6, 2, 2),
    decoder_layers_per_block=(5, 5, 5, 5),
    spatio_temporal_scaling=(True, True, True, True),
    decoder_spatio_temporal_scaling=(True, True, True),
    decoder_inject_noise=(False, False, False, False),
    downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    upsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
    upsample_residual=(True, True, True),
    upsample_factor=(2, 2, 2),
    timestep_conditioning=False,
    patch_size=4,
    patch_size_t=1,
    resnet_norm_eps=1e-6,
    encoder_causal=True,
    decoder_causal=False,
    encoder_spatial_padding_mode="zeros",
    decoder_spatial_padding_mode="reflect",
    spatial_compression_ratio=32,
    temporal_compression_ratio=8,
)

AUDIO_VAE = dict(
    base_channels=128,
    output_channels=2,
    ch_mult=(1, 2, 4),
    num_res_blocks=2,
    attn_resolutions=None,
    in_channels=2,
    resolution=256,
    latent_channels=8,
    norm_type="pixel",
    causality_axis="height",
    dropout=0.0,
    mid_block_add_attention=False,
    sample_rate=16000,
    mel_hop_length=160,
    is_causal=True,
    mel_bins=64,
    double_z=True,
)

VOCODER = dict(
    in_channels=128,
    hidden_channels=1024,
    out_channels=2,
    upsample_kernel_sizes=[16, 15, 8, 4, 4],
    upsample_factors=[6, 5, 2, 2, 2],
    resnet_kernel_sizes=[3, 7, 11],
    resnet_dilations=[[1, 3, 5], [1, 3, 5], [1, 3, 5]],
    act_fn="leaky_relu",
    leaky_relu_negative_slope=0.1,
    antialias=False,
    final_act_fn="tanh",
    final_bias=True,
    output_sampling_rate=24000,
)

UPSAMPLER = dict(
    in_channels=128,
    mid_channels=1024,
    num_blocks_per_stage=4,
    dims=3,
    spatial_upsample=True,
    temporal_upsample=False,
    rational_spatial_scale=2.0,
    use_rational_resampler=True,
)

#: The LTX-2 (dev) scheduler of the repo; fixed-sigma stages use a copy without shifting.
SCHEDULER = dict(
    num_train_timesteps=1000,
    shift=1.0,
    use_dynamic_shifting=True,
    base_shift=0.95,
    max_shift=2.05,
    base_image_seq_len=1024,
    max_image_seq_len=4096,
    shift_terminal=0.1,
)

#: google/gemma-3-12b-it (Gemma3ForConditionalGeneration), as `Gemma3Config(**GEMMA3_12B)`.
GEMMA3_12B = dict(
    text_config=dict(
        vocab_size=262208,
        hidden_size=3840,
        intermediate_size=15360,
        num_hidden_layers=48,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=256,
        query_pre_attn_scalar=256,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=131072,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        rope_local_base_freq=10_000.0,
        rope_scaling={"factor": 8.0, "rope_type": "linear"},
        sliding_window=1024,
        sliding_window_pattern=6,
        attention_bias=False,
        attn_logit_softcapping=None,
        final_logit_softcapping=None,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
    ),
    vision_config=dict(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=896,
        patch_size=14,
        vision_use_head=False,
    ),
    mm_tokens_per_image=256,
    boi_token_index=255999,
    eoi_token_index=256000,
    image_token_index=262144,
)

REAL = dict(
    transformer=TRANSFORMER,
    connectors=CONNECTORS,
    vae=VIDEO_VAE,
    audio_vae=AUDIO_VAE,
    vocoder=VOCODER,
    latent_upsampler=UPSAMPLER,
    scheduler=SCHEDULER,
    text_encoder=GEMMA3_12B,
)

# --- tiny (CPU dry runs): the sizes of scenekit.ltx2.tiny ----------------------------------------

_TEXT_HIDDEN, _TEXT_LAYERS = 32, 2  # the tiny Gemma-3 of scenekit.ltx2.tiny

_TINY = tiny_configs()
TINY = dict(
    _TINY,
    transformer=dict(_TINY["transformer"], num_layers=30),  # so that the dev profiles' STG block 29 exists
    scheduler=SCHEDULER,
    text_encoder=dict(
        text_config=dict(
            vocab_size=None,  # filled with the tokenizer's size
            hidden_size=_TEXT_HIDDEN,
            intermediate_size=64,
            num_hidden_layers=_TEXT_LAYERS,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            query_pre_attn_scalar=16,
            max_position_embeddings=256,
            sliding_window=8,
            pad_token_id=0,
            eos_token_id=1,
            bos_token_id=2,
        ),
        vision_config=dict(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=8, patch_size=2
        ),
        mm_tokens_per_image=4,
        boi_token_index=5,
        eoi_token_index=6,
        image_token_index=7,
    ),
)
