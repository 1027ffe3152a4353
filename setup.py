"""Installs the `maskconver` package from projects/maskconver/."""

import setuptools

# TensorFlow, Model Garden and tf-keras move together: Model Garden 2.20 is
# built on tf_keras 2.20, and a floating tf-keras breaks checkpoints and export.
_TF_STACK = [
    'tensorflow~=2.20.0',
    'tf-models-official~=2.20.0',
    'tf-keras~=2.20.0',
]

setuptools.setup(
    name='maskconver',
    version='0.1.0',
    description='MaskConver panoptic segmentation on TensorFlow Model Garden.',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10,<3.13',
    package_dir={'maskconver': 'projects/maskconver'},
    packages=['maskconver'] + [
        'maskconver.' + p
        for p in setuptools.find_packages(where='projects/maskconver')
    ],
    install_requires=_TF_STACK + [
        'numpy>=1.26,<3',
        'pillow>=10',
        'pycocotools>=2.0.7',
        'tqdm>=4.66',
        'pyyaml>=6',
        # LiteRT's interpreter and flatbuffer schema (TFLite export and
        # metadata; tf-models-official requires it too).
        'ai-edge-litert>=1.2',
        # Reads torchvision / timm ImageNet weights (tools.import_backbone).
        'safetensors>=0.4',
    ],
    extras_require={
        'test': ['pytest>=8', 'pytest-timeout>=2.3', 'pytest-xdist>=3.5',
                 'hotcoco>=1.3'],
        # ONNX export (maskconver.serving.export_onnx): versions tested
        # together with tensorflow 2.20 (docs/onnx.md).
        'onnx': ['tf2onnx==1.17.0', 'onnx==1.23.2', 'onnxruntime==1.32.0'],
    },
    entry_points={
        'console_scripts': [
            'maskconver-train=maskconver.train:run',
            'maskconver-demo=maskconver.demo:run',
            'maskconver-export-saved-model='
            'maskconver.serving.export_saved_model:run',
            'maskconver-export-tflite=maskconver.serving.export_tflite:run',
            'maskconver-export-onnx=maskconver.serving.export_onnx:run',
            'maskconver-evaluate-pq=maskconver.tools.evaluate_pq:run',
            'maskconver-model-stats=maskconver.tools.model_stats:run',
            'maskconver-scale-report=maskconver.tools.scale_report:run',
            'maskconver-import-backbone=maskconver.tools.import_backbone:run',
            'maskconver-synthetic=maskconver.data.synthetic:run',
            'maskconver-convert-coco-panoptic='
            'maskconver.data.convert_coco_panoptic:run',
            'maskconver-check-dataset=maskconver.data.check_dataset:run',
            'maskconver-check-records=maskconver.dataloaders.check_records:run',
        ],
    },
)
