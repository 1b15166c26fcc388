FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY service ./service
COPY detectors ./detectors
COPY traffic ./traffic
COPY models ./models
ENV DISTILLGUARD_DETECTION__MODEL_PATH=/app/models/default
RUN pip install --no-cache-dir .
EXPOSE 8000
ENTRYPOINT ["distillguard"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
