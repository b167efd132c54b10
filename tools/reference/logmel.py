"""Whisper-style log-mel spectrogram, written from the published recipe (numpy, float64).

Used only to generate test fixtures. Conventions (all match Hugging Face's WhisperFeatureExtractor):
  - 16 kHz mono, n_fft 400, hop 160, periodic Hann window w[n] = 0.5 - 0.5 cos(2 pi n / n_fft)
  - center=True: the signal is padded by n_fft//2 samples on both sides with REFLECT padding
    (x[1], x[2], ... mirrored, the edge sample itself is not repeated), giving 1 + len//hop frames
  - power spectrum |rfft|^2 (201 bins); the LAST frame is dropped, so len//hop frames remain
  - Slaney mel filterbank (librosa htk=False, norm='slaney'), fmin 0, fmax 8000
  - log10(max(mel, 1e-10)), then max(x, max(x) - 8) with the max over the whole spectrogram,
    then (x + 4) / 4
"""
import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160

# Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP  # 15 mel
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    lin = f / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(f, 1e-300) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log, lin)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    lin = m * _F_SP
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (m - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log, lin)


def mel_filters(n_mels, sr=SAMPLE_RATE, n_fft=N_FFT, fmin=0.0, fmax=8000.0):
    """[n_mels, n_fft//2 + 1] float64 triangular filters with Slaney area normalisation."""
    n_bins = n_fft // 2 + 1
    fft_hz = np.arange(n_bins, dtype=np.float64) * (sr / n_fft)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    out = np.zeros((n_mels, n_bins), dtype=np.float64)
    for m in range(n_mels):
        lo, mid, hi = edges_hz[m], edges_hz[m + 1], edges_hz[m + 2]
        rising = (fft_hz - lo) / (mid - lo)
        falling = (hi - fft_hz) / (hi - mid)
        out[m] = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (hi - lo))
    return out


def hann_periodic(n=N_FFT):
    k = np.arange(n, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * k / n)


def power_spectrogram(x, n_fft=N_FFT, hop=HOP):
    """[n_fft//2+1, len(x)//hop] float64 |STFT|^2, center + reflect padding, last frame dropped."""
    x = np.asarray(x, dtype=np.float64)
    pad = n_fft // 2
    if x.shape[0] <= pad:
        raise ValueError(f"logmel: need more than {pad} samples for reflect padding, got {x.shape[0]}")
    xp = np.pad(x, (pad, pad), mode="reflect")
    n_frames = 1 + (xp.shape[0] - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = xp[idx] * hann_periodic(n_fft)[None, :]
    spec = np.fft.rfft(frames, axis=1)
    power = spec.real ** 2 + spec.imag ** 2
    return power[:-1].T  # Whisper drops the last frame


def log_mel(x, n_mels=80):
    """[n_mels, len(x)//160] float64 Whisper log-mel of a 16 kHz signal (no padding to 30 s)."""
    mel = mel_filters(n_mels) @ power_spectrogram(x)
    logm = np.log10(np.maximum(mel, 1e-10))
    logm = np.maximum(logm, logm.max() - 8.0)
    return (logm + 4.0) / 4.0


def whisper_features(x, n_samples, n_mels=80):
    """What Qwen2AudioProcessor feeds the model: audio zero-padded (or truncated) to n_samples
    (chunk_length * 16000; 480000 for real Qwen2-Audio), log-mel over the padded signal, and the
    number of valid frames = ceil(len / hop) (HF subsamples the per-sample mask with [::hop]).
    Returns (logmel [n_mels, n_samples//hop] float64, n_valid_frames)."""
    x = np.asarray(x, dtype=np.float64)[:n_samples]
    valid = (x.shape[0] + HOP - 1) // HOP
    padded = np.zeros(n_samples, dtype=np.float64)
    padded[: x.shape[0]] = x
    return log_mel(padded, n_mels), valid
